# Sensor-node settings. Copy to config.py, edit, deploy:
#     cp ports/esp32/config_example.py my_config.py    # edit it
#     python tools/deploy.py --port /dev/ttyUSB0 --config my_config.py
# Names ports/node.py reads; the commented ones have the default shown.

WIFI_SSID = "my-network"
WIFI_PASSWORD = "my-password"
# WIFI_TIMEOUT_MS = 15000          # give up joining after this; the node sleeps and retries

SERVER_HOST = "192.168.1.10"       # a DTLS 1.2 PSK server (CoAP/LwM2M style)
SERVER_PORT = 5684
# PROTOCOL = "dtls"                # "coap": POST each reading as a CoAP request (coaps://)
# COAP_METHOD = "POST"             # with PROTOCOL = "coap": the method, and the path
# COAP_PATH = None                 # (None: "/sensors/" + NODE_NAME); a 2.xx response is ok
IDENTITY = "Client_identity"
PSK_HEX = "73656372657450534b"     # the pre-shared key as hex

SLEEP_MS = 60000                   # deep sleep between wakes
# FAIL_SLEEP_MS = None             # after a failed wake (None: SLEEP_MS)
# BIND_PORT = None                 # first local port (None: random); later wakes reuse the
#                                  # port their saved connection used, as continuing needs
# BIND_HOST = "0.0.0.0"
# NODE_NAME = "node"               # goes into every reading
# REPLY_TIMEOUT_MS = 3000          # wait this long for the server's reply (a continued wake's
#                                  # first record waits ~3 RTO of it, learned; then resumes)
# AUTO_HANDSHAKE_TIMEOUT_S = None  # resume when the server was last heard longer ago (NATs: 30)
# FORCE_RESUME = False             # always resume instead of continuing the connection
# SESSION_FILE = "session.bin"     # durable session copy on flash (None: RTC memory only)
# INITIAL_TIMEOUT_MS = 1000        # handshake retransmission timer (RFC 6347 4.2.4.1)
# MAX_RETRANSMITS = 3
# HANDSHAKE_TIMEOUT_MS = 30000     # a whole handshake, however the server answers
# BOOT_GRACE_MS = 3000             # after power-on/reset: time to press Ctrl-C for the REPL
