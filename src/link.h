/* link: the network model between the device and the edge server. A link is an uplink
 * bandwidth and a round-trip time, from a preset (3g, lte, wifi, 5g) or the job's custom
 * values; the wire format says how many bytes each value of a sent feature map takes.
 *
 *     T_net(bytes) = rtt_ms + 8 * bytes / bandwidth
 *
 * The names tables are the allowed words of network.preset and search.wire in job.c.
 */
#ifndef OFFNAS_LINK_H
#define OFFNAS_LINK_H

struct job;

/* The presets of network.preset; custom takes the job's bandwidth_mbps and rtt_ms. */
enum link_preset { LINK_3G, LINK_LTE, LINK_WIFI, LINK_5G, LINK_CUSTOM, LINK_PRESET_COUNT };
/* Their names, indexed by enum link_preset, NULL after the last. */
extern const char *const LINK_PRESET_NAMES[];

/* The wire formats of search.wire: the values of a feature map as sent. */
enum link_wire { LINK_WIRE_FP32, LINK_WIRE_FP16, LINK_WIRE_INT8, LINK_WIRE_COUNT };
/* Their names, indexed by enum link_wire, NULL after the last. */
extern const char *const LINK_WIRE_NAMES[];

struct link {
    char name[16];         /* the preset's name, or "custom" */
    double bandwidth_mbps; /* uplink, megabits per second */
    double rtt_ms;
};

/* Fills link from network.preset or, for custom, the bandwidth and RTT keys. Returns 0 or -1
 * with an error naming the key. */
int link_from_job(struct link *link, const struct job *job);

/* Transfer time of bytes over link in milliseconds. */
static inline double link_transfer_ms(const struct link *link, double bytes)
{
    return link->rtt_ms + 8.0 * bytes / (link->bandwidth_mbps * 1e3);
}

/* Bytes per value of the wire format (fp32 4, fp16 2, int8 1); -1 with an error naming
 * search.wire otherwise. */
int link_wire_bytes(const char *wire);

#endif
