"""The energy model's arithmetic (tools/energy.py), against figures worked out by hand."""
import os

import pytest

import energy

RADIO = {"name": "test radio", "volts": 2.0, "tx_ma": 100.0, "rx_ma": 50.0, "idle_ma": 10.0,
         "fixed_mas": 5.0, "separate": False, "sleep_ma": 0.0}


def test_airtime_counts_ip_udp_headers():
    # (100 + 28) + (200 + 28) = 356 B = 2,848 bits at 100 kbit/s
    assert energy.airtime_s([100, 200], 100) == pytest.approx(0.02848)
    assert energy.airtime_s([100, 200], None) == 0.0


def test_wake_energy_by_hand():
    # 2 datagrams up (72 B each -> 100 B with headers), 1 down (172 B -> 200 B), 8 kbit/s both ways:
    # t_tx = 1600 bits / 8000 = 0.2 s, t_rx = 0.2 s; wall 1.0 s of which 10 ms host CPU;
    # ESP32 CPU = 10 ms x 40 = 0.4 s; t_on = 0.99 + 0.4 = 1.39 s; t_idle = 0.99 s
    e = energy.wake_energy(RADIO, [72, 72], [172], 1000.0, 10.0, "micropython", 8, 8)
    assert e["esp32_cpu_s"] == pytest.approx(0.4)
    assert e["radio_on_s"] == pytest.approx(1.39)
    assert (e["tx_s"], e["rx_s"], e["idle_s"]) == pytest.approx((0.2, 0.2, 0.99))
    radio = 100 * 0.2 + 50 * 0.2 + 10 * 0.99  # 39.9 mA*s
    cpu = energy.ESP32_CPU_MA * 0.4           # 20 mA*s
    assert e["radio_mas"] == pytest.approx(radio)
    assert e["cpu_mas"] == pytest.approx(cpu)
    assert e["host_wait_mas"] == 0.0          # the radio is the ESP32's own
    assert e["exchange_mj"] == pytest.approx(radio * 2.0 + cpu * energy.ESP32_VOLTS)
    assert e["total_mas"] == pytest.approx(radio + cpu + 5.0)
    assert e["total_mj"] == pytest.approx(radio * 2.0 + cpu * energy.ESP32_VOLTS + 10.0)


def test_separate_modem_adds_the_waiting_esp32_and_builtin_scales_as_c():
    r = dict(RADIO, separate=True)
    e = energy.wake_energy(r, [72], [72], 500.0, 10.0, "builtin", 8, 8)
    cpu_s = 0.010 * energy.CPU_SCALE["builtin"]
    assert e["esp32_cpu_s"] == pytest.approx(cpu_s)
    t_on = 0.49 + cpu_s
    assert e["radio_on_s"] == pytest.approx(t_on)
    assert e["host_wait_mas"] == pytest.approx(energy.ESP32_WAIT_MA * (t_on - cpu_s))


def test_radio_on_never_shorter_than_airtime():
    e = energy.wake_energy(RADIO, [972] * 10, [], 1.0, 0.0, "micropython", 8, 8)
    assert e["radio_on_s"] == pytest.approx(e["tx_s"]) and e["idle_s"] == pytest.approx(0.0)


def test_battery_days_by_hand():
    # 36 mA*s every hour = 0.01 mA average, plus 0.01 mA sleep: 2,000 mAh / 0.02 mA = 100,000 h
    assert energy.battery_days(36.0, 3600, 0.01) == pytest.approx(100000 / 24.0)
    with pytest.raises(ValueError):
        energy.battery_days(1.0, 0, 0.01)


def test_projection_monotonic_and_cheaper_wake_lasts_longer():
    p = energy.projection("lte-m", {"cheap": 30.0, "dear": 60.0})
    assert [t for t, _ in p["cheap"]] == list(energy.INTERVALS_S)
    for series in p.values():
        days = [d for _, d in series]
        assert days == sorted(days)  # rarer wakes, longer life
    assert all(c > d for (_, c), (_, d) in zip(p["cheap"], p["dear"]))
    # life is bounded by sleep alone: 2,000 mAh / sleep current
    assert p["cheap"][-1][1] < energy.CELL_MAH / energy.sleep_ma("lte-m") / 24


def test_every_radio_names_its_sources():
    for key, r in energy.RADIOS.items():
        assert r["sources"] and r["name"]
        assert r["tx_ma"] > r["rx_ma"] > 0 and r["idle_ma"] > 0 and r["fixed_mas"] > 0
    assert energy.sleep_ma("esp32-wifi") == pytest.approx(0.010)
    assert energy.sleep_ma("nb-iot") == pytest.approx(0.0127)


def test_plot_writes_png_or_says_why(tmp_path):
    path = str(tmp_path / "b.png")
    why = energy.plot(path, "test", {"esp32-wifi": energy.projection("esp32-wifi", {"a": 10.0})})
    if why is None:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    else:
        assert "matplotlib" in why and not os.path.exists(path)
