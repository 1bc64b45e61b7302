/* fuzz_job_ini: job files. The input is the INI text of a job, read by job_load_text (the
 * defaults, the text, job_finalize); a job that loads must write back to the same job
 * (fuzz_check_job_round_trip). */
#include "fuzz_lib.h"

#include "job.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    char *text = fuzz_string(data, size);
    struct job *job = malloc(sizeof *job);
    if (!job)
        abort();
    if (fuzz_step("job_load_text", job_load_text(job, text, fuzz_dir(), "job.ini")) == 0)
        fuzz_check_job_round_trip(job);
    free(job);
    free(text);
    return 0;
}
