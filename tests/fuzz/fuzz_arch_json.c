/* fuzz_arch_json: arch.json, the derived network `offnas derive` writes. The input is the
 * file, read by derived_load; a file that loads is turned into the derived network's job by
 * derived_job (its job text, ops and split checked against the layers). */
#include "fuzz_lib.h"

#include "derived.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    const char *path = fuzz_write_file("arch.json", data, size);
    struct derived d = {0};
    if (fuzz_step("derived_load", derived_load(&d, path)) == 0) {
        struct job *job = malloc(sizeof *job);
        if (!job)
            abort();
        fuzz_step("derived_job", derived_job(job, &d, fuzz_dir(), NULL, 0));
        free(job);
    }
    json_decref(d.root);
    return 0;
}
