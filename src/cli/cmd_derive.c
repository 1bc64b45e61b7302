/* cmd_derive: `offnas derive`: fixes the choices of a search into RUN/arch.json. */
#include "cmd.h"
#include "common.h"
#include "derive.h"

#include <stdio.h>
#include <string.h>

static const char DERIVE_USAGE[] =
    "usage: offnas derive --run DIR [--mode accuracy|argmax]\n"
    "\n"
    "Fixes the choices of a search. The ops are the most likely op per layer. Then, for those\n"
    "ops (--mode accuracy, the default): at every split the channels ranked by their keep\n"
    "logits, the fewest whose supernet validation accuracy (batch norm re-estimated) stays\n"
    "within derive.max_accuracy_drop of the unmasked one, and the split with the lowest\n"
    "predicted latency among those. --mode argmax: the most likely split and the channels with\n"
    "keep probability > 0.5 (the paper's rule; always recorded beside the other). Writes\n"
    "DIR/arch.json with the predicted latency of the derived network and of the same network\n"
    "all on the device and all on the edge. Then: offnas train --arch DIR/arch.json --out DIR2.\n";

static void print_choice(const char *what, const struct derive_choice *c)
{
    printf("%s: split %d, %d of %d channels, %.0f bytes, predicted %.3f ms (device %.3f, "
           "transfer %.3f, edge %.3f)\n",
           what, c->split, c->kept, c->total, c->bytes, c->latency.total, c->latency.device,
           c->latency.transfer, c->latency.edge);
}

int cmd_derive(int argc, char **argv)
{
    const char *run = NULL, *mode = "accuracy";
    const struct cmd_option options[] = {{"--run", CMD_NEEDED, &run, 0, 0},
                                         {"--mode", CMD_STRING, &mode, 0, 0}};
    int status = cmd_parse(argc, argv, "derive", DERIVE_USAGE, NULL, options, 2);
    if (status != CMD_CONTINUE)
        return status;
    if (strcmp(mode, "accuracy") && strcmp(mode, "argmax"))
        return cmd_usage_error("derive: --mode must be accuracy or argmax, not '%s'", mode);
    int argmax_only = !strcmp(mode, "argmax");
    struct derive_result *r = offnas_calloc(1, sizeof *r);
    if (derive_run(run, argmax_only, r)) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        free(r);
        return 1;
    }
    print_choice("derived", &r->chosen);
    if (!argmax_only) {
        printf("supernet validation accuracy: %.4f unmasked, %.4f with the derived mask "
               "(%d measurements)\n",
               r->unmasked_accuracy, r->chosen.accuracy, r->measurements);
        print_choice("argmax rule", &r->argmax);
    }
    printf("arch: %s/arch.json\n", run);
    free(r);
    return 0;
}
