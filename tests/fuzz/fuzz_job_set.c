/* fuzz_job_set: `--set` overrides. The input is one "section.key=value" assignment a line,
 * applied in order by job_set over the defaults until one fails, then job_finalize; a job that
 * finalizes must write back to the same job (fuzz_check_job_round_trip). */
#include "fuzz_lib.h"

#include "job.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    char *text = fuzz_string(data, size);
    struct job *job = malloc(sizeof *job);
    if (!job)
        abort();
    job_defaults(job);
    int rc = 0;
    for (char *line = text; line && !rc;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        rc = fuzz_step("job_set", job_set(job, line));
        line = nl ? nl + 1 : NULL;
    }
    if (!rc && fuzz_step("job_finalize", job_finalize(job)) == 0)
        fuzz_check_job_round_trip(job);
    free(job);
    free(text);
    return 0;
}
