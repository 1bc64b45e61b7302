/* link: the network presets, custom links and wire formats (see link.h). */
#include "link.h"

#include "common.h"
#include "job.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *const LINK_PRESET_NAMES[] = {"3g", "lte", "wifi", "5g", "custom", NULL};
_Static_assert(OFFNAS_ARRAY_LEN(LINK_PRESET_NAMES) == LINK_PRESET_COUNT + 1,
               "a name for every network preset");

/* Uplinks of 3G, LTE and Wi-Fi: the average measured uplinks of Kang et al., "Neurosurgeon",
 * ASPLOS 2017 (Table 1); 5G and all RTTs are typical values we assume (profiles/README.md).
 * Every preset but custom. */
static const struct preset_values {
    double bandwidth_mbps, rtt_ms;
} PRESET_VALUES[] = {
    [LINK_3G] = {1.1, 100.0},
    [LINK_LTE] = {5.85, 50.0},
    [LINK_WIFI] = {18.88, 10.0},
    [LINK_5G] = {50.0, 20.0},
};
_Static_assert(OFFNAS_ARRAY_LEN(PRESET_VALUES) == LINK_CUSTOM,
               "a bandwidth and an RTT for every preset but custom");

const char *const LINK_WIRE_NAMES[] = {"fp32", "fp16", "int8", NULL};
_Static_assert(OFFNAS_ARRAY_LEN(LINK_WIRE_NAMES) == LINK_WIRE_COUNT + 1,
               "a name for every wire format");

static const int WIRE_BYTES[] = {[LINK_WIRE_FP32] = 4, [LINK_WIRE_FP16] = 2, [LINK_WIRE_INT8] = 1};
_Static_assert(OFFNAS_ARRAY_LEN(WIRE_BYTES) == LINK_WIRE_COUNT, "bytes for every wire format");

/* Index of word in the NULL-terminated names, or -1. */
static int find_name(const char *const *names, const char *word)
{
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], word))
            return i;
    return -1;
}

/* The NULL-terminated names as "a, b, c" into buf (for error messages). */
static const char *list_names(char *buf, size_t size, const char *const *names)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; names[i] && len < size; i++) {
        int n = snprintf(buf + len, size - len, "%s%s", i ? ", " : "", names[i]);
        len += n > 0 ? (size_t)n : 0;
    }
    return buf;
}

int link_from_job(struct link *link, const struct job *job)
{
    char names[128];
    int preset = find_name(LINK_PRESET_NAMES, job->network_preset);
    if (preset < 0)
        return offnas_error("network.preset: unknown preset '%s' (%s)", job->network_preset,
                            list_names(names, sizeof names, LINK_PRESET_NAMES));
    memset(link, 0, sizeof *link);
    snprintf(link->name, sizeof link->name, "%s", LINK_PRESET_NAMES[preset]);
    if (preset != LINK_CUSTOM) {
        link->bandwidth_mbps = PRESET_VALUES[preset].bandwidth_mbps;
        link->rtt_ms = PRESET_VALUES[preset].rtt_ms;
        return 0;
    }
    if (!(job->network_bandwidth_mbps > 0) || !isfinite(job->network_bandwidth_mbps))
        return offnas_error("network.bandwidth_mbps: %g must be > 0 for the custom preset",
                            job->network_bandwidth_mbps);
    if (!(job->network_rtt_ms > 0) || !isfinite(job->network_rtt_ms))
        return offnas_error("network.rtt_ms: %g must be > 0 for the custom preset",
                            job->network_rtt_ms);
    link->bandwidth_mbps = job->network_bandwidth_mbps;
    link->rtt_ms = job->network_rtt_ms;
    return 0;
}

int link_wire_bytes(const char *wire)
{
    char names[64];
    int format = find_name(LINK_WIRE_NAMES, wire);
    if (format < 0)
        return offnas_error("search.wire: unknown wire format '%s' (%s)", wire,
                            list_names(names, sizeof names, LINK_WIRE_NAMES));
    return WIRE_BYTES[format];
}
