"""Named link profiles for the demo and the benchmark (CPython only): what a sensor node's packets
meet between it and its DTLS server, emulated on loopback by tools/netem.py's seeded relay.

    import links
    p = links.get("lte-m")
    with links.relay(p, (srv.host, srv.port), seed=1) as front:   # a netem.Relay
        run the client against 127.0.0.1:front.port with p.timeout_ms / p.reply_ms ...

A profile: rtt_ms (mean round trip; each direction gets half), jitter_ms (each one-way delay is
drawn uniformly within +-jitter_ms/2 of rtt_ms/2; datagrams stay in order, as a cellular
bearer delivers them), loss (per datagram and direction, seeded), up_kbps / down_kbps (the
bottleneck: each datagram's UDP payload plus 28 B of IPv4/UDP header is serialised at that
rate, queued behind the one before; None = no limit), radio (the tools/energy.py radio its
energy is priced with; None = no radio), and the client settings the demo uses on that link
(timeout_ms: initial retransmission timeout; reply_ms: how long a request waits for its
reply). Every figure names its source; where a figure is our estimate the comment says so.

This module never touches a socket itself: relay() returns a netem.Relay, not yet started.
"""
import netem


class Profile:
    def __init__(self, name, rtt_ms, jitter_ms, loss, up_kbps, down_kbps, radio, timeout_ms,
                 reply_ms, summary):
        if rtt_ms < 0 or jitter_ms < 0 or jitter_ms > rtt_ms:
            raise ValueError("need 0 <= jitter_ms <= rtt_ms")
        self.name, self.rtt_ms, self.jitter_ms, self.loss = name, rtt_ms, jitter_ms, loss
        self.up_kbps, self.down_kbps, self.radio = up_kbps, down_kbps, radio
        self.timeout_ms, self.reply_ms, self.summary = timeout_ms, reply_ms, summary

    def one_way_ms(self):
        """(lo, hi) of each direction's delay in milliseconds."""
        half, j = self.rtt_ms / 2.0, self.jitter_ms / 2.0
        return (half - j, half + j)

    def describe(self):
        rate = ("unlimited" if self.up_kbps is None else
                "%g kbit/s up, %g kbit/s down" % (self.up_kbps, self.down_kbps))
        return "%s: RTT %g ms +- %g ms jitter, %.1f%% loss each way, %s (%s)" % (
            self.name, self.rtt_ms, self.jitter_ms / 2.0, self.loss * 100, rate, self.summary)

    def as_dict(self):
        return {"name": self.name, "rtt_ms": self.rtt_ms, "jitter_ms": self.jitter_ms,
                "loss": self.loss, "up_kbps": self.up_kbps, "down_kbps": self.down_kbps,
                "radio": self.radio, "timeout_ms": self.timeout_ms, "reply_ms": self.reply_ms}


PROFILES = {}


def _add(p):
    PROFILES[p.name] = p


# loopback: no impairment at all (the relay only counts the bytes). The demo's settings of
# before this module (300 ms initial retransmission timeout, 1 s reply wait).
_add(Profile("loopback", 0, 0, 0.0, None, None, None, 300, 1000, "no impairment"))

# wifi: an ESP32 on a home/office WLAN reaching a server over broadband.
# - RTT 30 ms, jitter 20 ms: OUR ESTIMATE for a WLAN hop plus a regional internet path (no
#   measurement of our own; WLAN latency has long tails, see Sui et al., "Characterizing and
#   Improving WiFi Latency in Large-Scale Operational Networks", ACM MobiSys 2016).
# - loss 1%: OUR ESTIMATE (802.11 retries hide most radio loss from IP).
# - 10 Mbit/s each way: OUR ESTIMATE of a broadband uplink; far above what a few hundred bytes
#   need, so serialisation is negligible here either way.
_add(Profile("wifi", 30, 20, 0.01, 10000, 10000, "esp32-wifi", 300, 1000,
             "WLAN + broadband, estimate"))

# lte-m: LTE Cat-M1 (3GPP Rel-13), a module such as Nordic nRF9160 or u-blox SARA-R4.
# - RTT 150 ms, jitter 40 ms: OUR ESTIMATE between the published figures: Cat-M1 latency
#   10-15 ms over the air (Keysight application note 5992-2747EN "NB-IoT and LTE Cat-M1 Field
#   Measurements and SLA Verification", 2017, table 1) and a message latency of 0.1 s at the edge
#   of normal coverage (GSMA/industry white paper "Evaluation of LTE-M towards 5G IoT
#   requirements", 2017: 0.1 s at the coverage edge, 6.2 s in extreme coverage). boaks/
#   zephyr-coaps-client docu/POWERCONSUMPTION.md (Californium's author, nRF9160 on a German
#   network) measured 0.8 s for a 200 B request / 200 B response exchange, RRC set-up included.
# - 100 kbit/s each way: typical application throughput of Cat-M1 (~100 kbps, Qualcomm figures
#   as cited by meratch.com's LTE Cat-M glossary); peak 1 Mbit/s (Keysight 5992-2747EN).
# - loss 0.5%: OUR ESTIMATE (HARQ and RLC acknowledged mode hide most radio loss from IP).
# - client: 1 s initial retransmission timeout (RFC 6347 4.2.4.1's default), 2 s reply wait.
_add(Profile("lte-m", 150, 40, 0.005, 100, 100, "lte-m", 1000, 2000,
             "LTE Cat-M1, normal coverage"))

# nb-iot: NB-IoT Cat-NB1 (3GPP Rel-13), e.g. nRF9160 or u-blox SARA-N2.
# - RTT 1,000 ms, jitter 400 ms: OUR ESTIMATE near a measured 837 ms latency (Ugwuanyi, Paul,
#   Irvine, "Survey of IoT for Developing Countries: Performance Analysis of LoRaWAN and Cellular
#   NB-IoT Networks", Electronics 10(18):2224, 2021) and the 1.6-10 s latency range quoted for
#   Cat-NB1 (blog.mbedded.ninja "Cellular Communication Protocols", 2024, from 3GPP figures;
#   Keysight 5992-2747EN: 100 ms to ~8 s).
# - 20 kbit/s up: single-tone uplink peak (Keysight 5992-2747EN); 26 kbit/s down: Cat-NB1
#   downlink peak (blog.mbedded.ninja, as above). Real throughput is often lower (Ugwuanyi et
#   al. measured 264 bit/s at most on their network).
# - loss 1%: OUR ESTIMATE.
# - client: 3 s initial retransmission timeout (RFC 7925 allows up to 9 s on constrained
#   links), 5 s reply wait.
_add(Profile("nb-iot", 1000, 400, 0.01, 20, 26, "nb-iot", 3000, 5000,
             "NB-IoT Cat-NB1, normal coverage"))


def get(name):
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError("unknown link profile %r (known: %s)" % (name, ", ".join(PROFILES)))


def names():
    return list(PROFILES)


def relay_options(p):
    """netem.Relay keyword arguments that emulate profile p."""
    lo, hi = p.one_way_ms()
    return {"loss": p.loss, "delay_ms": (lo, hi), "in_order": True,
            "up": {"rate_kbps": p.up_kbps}, "down": {"rate_kbps": p.down_kbps}}


def relay(p, upstream, seed=0, **extra):
    """A netem.Relay (not started: use it in a with statement) between clients and upstream
    that impairs both directions as profile p says; extra goes to netem.Relay (e.g. cid_len)."""
    return netem.Relay(upstream, seed="%s/%s" % (p.name, seed), **dict(relay_options(p), **extra))
