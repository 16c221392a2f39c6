"""Energy per wake, A MODEL (CPython only): what one wake of a sensor node costs its battery, from
what crossed the (emulated) wire, the wake's wall time on that link and its CPU time, priced with
published currents of real radios. It is arithmetic on stated figures, not a measurement of a
board: every figure below names its source, and where one is our estimate or assumption it says
so. tools/demo.py and tools/bench.py (section energy) print it; tests/test_energy.py checks it.

Per wake (all currents drawn from the battery; charge in mA*s, energy = charge * the part's
supply voltage; converter losses and battery self-discharge are left out):

    radio-on time  t_on   = measured wall time of the wake on the emulated link
                            - its CPU time on this host + that CPU time scaled to an ESP32
    transmitting   t_tx   = sum over datagrams sent of (UDP payload + 28 B IPv4/UDP) * 8 / uplink rate
    receiving      t_rx   = the same for datagrams received, at the downlink rate
    idle-connected t_idle = t_on - t_tx - t_rx (waiting for the server: round trips, timeouts)
    radio charge          = I_tx * t_tx + I_rx * t_rx + I_idle * t_idle
    CPU charge            = ESP32 CPU seconds * I_cpu (ESP32 active at 240 MHz)
    host-wait charge      = (t_on - ESP32 CPU seconds) * I_host_wait, only when the radio is a
                            separate module (the ESP32 is awake while the modem waits)
    fixed charge          = the radio's own cost of a wake outside the DTLS exchange (WiFi:
                            reconnect; cellular: leave PSM, RRC connect, release), the same for
                            every client: it is shown apart and included in battery life

Battery life for a wake every T seconds: capacity / (sleep current + charge per wake / T).

CPU time: measured on THIS HOST (schedstat of the MicroPython unix port process around the wake),
which is NOT an ESP32's. We multiply it by CPU_SCALE (an ASSUMPTION, see below); the wake's
wall time keeps the host's CPU time out and the scaled one in.

This module never runs anything: it is functions over numbers (and matplotlib, optionally, for
the plot).
"""

# ---- the ESP32 (the node's MCU in every case) ----------------------------------------------
# Espressif "ESP32 Series Datasheet" v3.x, section 5 (Electrical Characteristics):
#   table "Power Consumption by Power Modes": Modem-sleep, 240 MHz, 30-68 mA (we use 50 mA, the
#   middle of that range: OUR CHOICE); Modem-sleep, 80 MHz, 20-31 mA (we use 20 mA while the
#   ESP32 waits for a separate modem: OUR CHOICE); Deep-sleep, RTC timer + RTC memory, 10 uA.
#   table "RF Power-Consumption Specifications" (3.3 V, 25 C): transmit 802.11n MCS7 (+14 dBm)
#   180 mA (802.11b 1 Mbps at +19.5 dBm: 240 mA); receive 802.11b/g/n 95-100 mA.
#   (The same figures are reproduced by lastminuteengineers.com "ESP32 Sleep Modes & Their Power
#   Consumption".)
ESP32_VOLTS = 3.3
ESP32_CPU_MA = 50.0
ESP32_WAIT_MA = 20.0
ESP32_DEEP_SLEEP_MA = 0.010

# CPU_SCALE: ESP32 CPU seconds per host CPU second. ASSUMPTION, not measured: MicroPython on an
# ESP32 at 240 MHz taken as 40x slower than the MicroPython unix port on this x86-64 host, and
# C code (the built-in `tls` client is C Mbed TLS, with the ESP32's AES/SHA accelerators) as 20x.
# Published comparisons of MicroPython boards (e.g. scruss.com's parallel benchmark: ESP32 at
# 160 MHz 15.4 s, ESP32-S3 at 240 MHz 8.9 s; Miguel Grinberg, "Benchmarking MicroPython",
# 2025, boards vs a laptop) put microcontrollers one to two orders of magnitude below a desktop;
# no ESP32 was timed for this model. Change the factor and the CPU share scales linearly.
CPU_SCALE = {"micropython": 40.0, "builtin": 20.0}

# ---- the radios ----------------------------------------------------------------------------
# Each: volts, tx_ma, rx_ma, idle_ma (connected, waiting for the server), fixed_mas (charge of a
# wake outside the DTLS exchange), separate (a modem beside the ESP32: the ESP32 waits awake),
# sleep_ma (the radio's own sleep current, added to the ESP32's deep sleep), sources.
RADIOS = {
    "esp32-wifi": {
        "name": "ESP32 WiFi (802.11n)", "volts": ESP32_VOLTS,
        "tx_ma": 180.0,   # ESP32 datasheet, 802.11n MCS7 +14 dBm
        "rx_ma": 100.0,   # ESP32 datasheet, receive 95-100 mA
        "idle_ma": 100.0,  # listening while it waits for a reply, no power save: the receive current (OUR ASSUMPTION)
        # reconnect after deep sleep (boot, associate, static IP): 1 s at 100 mA. OUR ESTIMATE;
        # G6EJD/ESP32-8266-Thingspeak-Deep-Sleep-Examples measured ~2.5 s at ~75 mA for a whole
        # wake with DHCP and an HTTP upload.
        "fixed_mas": 100.0,
        "separate": False, "sleep_ma": 0.0,
        "sources": "Espressif ESP32 Series Datasheet v3.x (RF power-consumption table); reconnect: estimate",
    },
    "lte-m": {
        "name": "nRF9160 LTE-M (Cat-M1)", "volts": 3.7,
        # Nordic nRF9160 Product Specification, "Modem current consumption" (3.7 V):
        "tx_ma": 105.0,   # uplink 180 kbit/s at 23 dBm, band 20 (100-115 mA over bands)
        "rx_ma": 45.0,    # the PS lists no receive-only current: its 0 dBm uplink figure (45 mA) as a stand-in, OUR ESTIMATE
        # connected and waiting: ~12 mA at 3.7 V, OUR ESTIMATE from boaks/zephyr-coaps-client
        # docu/POWERCONSUMPTION.md (nRF9160-DK, LTE-M, PSM without RAI: 12 s at 9 mA average at
        # 5 V, ~10 s of it the RRC inactivity timer)
        "idle_ma": 12.0,
        # PSM TAU event, Cat-M1, 23 dBm: 105 mJ in 1.5 s (nRF9160 PS): leave PSM, connect, release,
        # taken as the fixed cost of a wake with Release Assistance Indication (no RRC tail;
        # without RAI the network's RRC inactivity timer, ~10 s in boaks' measurement, adds more)
        "fixed_mas": 105.0 / 3.7,
        "separate": True,
        "sleep_ma": 0.0027,  # nRF9160 PS: PSM floor current 2.7 uA
        "sources": "Nordic nRF9160 Product Specification (modem current consumption, PSM floor, PSM TAU energy);"
                   " idle/rx: estimates (boaks/zephyr-coaps-client measurements)",
    },
    "nb-iot": {
        "name": "nRF9160 NB-IoT (Cat-NB1)", "volts": 3.7,
        "tx_ma": 105.0,   # the PS's Cat-M1 23 dBm figure; its NB1 figures mix TX and RX: OUR ESTIMATE
        "rx_ma": 35.0,    # nRF9160 PS, Cat-NB1 0 dBm "balanced TX 33% / RX 33%": 35 mA, as a stand-in (OUR ESTIMATE)
        "idle_ma": 12.0,  # as LTE-M (OUR ESTIMATE)
        "fixed_mas": 550.0 / 3.7,  # nRF9160 PS: PSM TAU event, Cat-NB1, 23 dBm: 550 mJ in 2.7 s
        "separate": True,
        "sleep_ma": 0.0027,  # nRF9160 PS: PSM floor current 2.7 uA
        "sources": "Nordic nRF9160 Product Specification (PSM floor, PSM TAU energy); tx/rx/idle: estimates",
    },
}

CELL_MAH = 2000.0          # the battery of the projection (a 2,000 mAh cell, e.g. one 18650 or 2x AA)
INTERVALS_S = (60, 120, 300, 600, 900, 1800, 3600)  # wake every 1 min ... 1 h
HEADER_BYTES = 28          # IPv4 + UDP header per datagram (no header compression assumed)


def cpu_scale(runtime):
    return CPU_SCALE["builtin" if runtime == "builtin" else "micropython"]


def airtime_s(sizes, kbps):
    """Seconds to serialise datagrams of the given UDP payload sizes at kbps (0 if kbps is None)."""
    if not kbps:
        return 0.0
    return sum((n + HEADER_BYTES) * 8 for n in sizes) / (kbps * 1000.0)


def wake_energy(radio, up_sizes, down_sizes, wall_ms, host_cpu_ms, runtime, up_kbps, down_kbps):
    """One wake's charge and energy under a radio: a dict of the parts (seconds, mA*s, mJ).
    up_sizes / down_sizes: UDP payload bytes of each datagram sent / received; wall_ms: the
    wake's wall time on the emulated link; host_cpu_ms: its CPU time on this host; runtime:
    "micropython" (dtls-lite) or "builtin" (MicroPython's C tls client)."""
    r = RADIOS[radio] if isinstance(radio, str) else radio
    cpu_s = max(host_cpu_ms or 0.0, 0.0) / 1000.0 * cpu_scale(runtime)
    t_tx = airtime_s(up_sizes, up_kbps)
    t_rx = airtime_s(down_sizes, down_kbps)
    t_on = max(wall_ms / 1000.0 - (host_cpu_ms or 0.0) / 1000.0, 0.0) + cpu_s
    t_on = max(t_on, t_tx + t_rx)
    t_idle = t_on - t_tx - t_rx
    radio_mas = r["tx_ma"] * t_tx + r["rx_ma"] * t_rx + r["idle_ma"] * t_idle
    cpu_mas = ESP32_CPU_MA * cpu_s
    wait_mas = ESP32_WAIT_MA * max(t_on - cpu_s, 0.0) if r["separate"] else 0.0
    exchange_mas = radio_mas + cpu_mas + wait_mas
    radio_mj = radio_mas * r["volts"]
    esp_mj = (cpu_mas + wait_mas) * ESP32_VOLTS
    return {"radio": radio if isinstance(radio, str) else r["name"], "radio_on_s": t_on, "tx_s": t_tx,
            "rx_s": t_rx, "idle_s": t_idle, "esp32_cpu_s": cpu_s, "radio_mas": radio_mas, "cpu_mas": cpu_mas,
            "host_wait_mas": wait_mas, "exchange_mas": exchange_mas, "exchange_mj": radio_mj + esp_mj,
            "fixed_mas": r["fixed_mas"], "fixed_mj": r["fixed_mas"] * r["volts"],
            "total_mas": exchange_mas + r["fixed_mas"], "total_mj": radio_mj + esp_mj + r["fixed_mas"] * r["volts"]}


def sleep_ma(radio):
    return ESP32_DEEP_SLEEP_MA + RADIOS[radio]["sleep_ma"]


def battery_days(wake_mas, interval_s, sleep_current_ma, cell_mah=CELL_MAH):
    """Days a cell lasts with one wake of wake_mas every interval_s and sleep_current_ma between."""
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    avg_ma = sleep_current_ma + wake_mas / float(interval_s)
    return cell_mah / avg_ma / 24.0


def projection(radio, per_wake_mas, intervals=INTERVALS_S, cell_mah=CELL_MAH):
    """{series: [(interval_s, days)]} for {series: charge per wake in mA*s}."""
    s = sleep_ma(radio)
    return {k: [(t, battery_days(q, t, s, cell_mah)) for t in intervals] for k, q in per_wake_mas.items()}


def wake_from_result(radio, profile, r):
    """wake_energy() of one wake reported by tools/bench_wake.py's helpers (our_wake / builtin_wake):
    the relay's log gives the datagram sizes, the worker its wall and CPU time."""
    w = r["wire"]
    return wake_energy(radio, [n for n, _ in w["up"]], [n for n, _ in w["down"]], r["wall_ms"],
                       r.get("cpu_ms") or 0.0, "builtin" if r.get("client") == "builtin tls" else "micropython",
                       profile.up_kbps, profile.down_kbps)


def plot(path, title, panels, intervals=INTERVALS_S):
    """A PNG of battery life (days) against wake interval: one panel per {panel title:
    {label: [(interval s, days)]}}. Returns None when written, else why it was skipped."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return "matplotlib is not installed (%s); `.venv/bin/pip install -e '.[plot]'` adds it" % e
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 0.6, 3.8), dpi=80, squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, (sub, curves) in zip(axes[0], panels.items()):
        for i, (label, pts) in enumerate(curves.items()):
            ax.plot([t / 60.0 for t, _ in pts], [d for _, d in pts], styles[i % 4], marker="o", ms=3, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([1, 2, 5, 10, 30, 60])
        ax.set_xticklabels(["1", "2", "5", "10", "30", "60"])
        ax.set_xlabel("wake interval (minutes)")
        ax.set_title(sub, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("battery life (days, 2,000 mAh)")
    fig.suptitle(title, fontsize=9)
    fig.text(0.01, 0.01, "A MODEL: published currents x emulated-link times (tools/energy.py, README)",
             fontsize=6, alpha=0.7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return None
