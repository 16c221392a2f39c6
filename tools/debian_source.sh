# Shell functions shared by tools/install_peers.sh and tools/build_mp32.sh (sourced, not run):
# find this machine's Debian mirror and fetch source packages of another Debian release through
# a private source list, so the machine's own apt configuration is never changed.
# Expects die() and log() from the sourcing script.

# Print the URI of the machine's main Debian archive (the one carrying its own release suite).
debian_mirror() {
    local codename="" f uri
    codename="$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")"
    # deb822 files: pick a stanza whose Types has deb or deb-src, and whose Suites has the
    # codename itself (not -security/-updates); print its first URI.
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri="$(awk -v cn="$codename" '
            function flush() {
                if (uris != "" && types ~ /deb/ && (cn == "" || (" " suites " ") ~ (" " cn " ")))
                    { split(uris, u, " "); print u[1]; found = 1; exit }
                types = ""; uris = ""; suites = ""
            }
            /^[[:space:]]*$/ { flush(); next }
            /^[[:space:]]*#/ { next }
            tolower($1) == "types:"  { $1 = ""; types = $0 }
            tolower($1) == "uris:"   { $1 = ""; uris = $0 }
            tolower($1) == "suites:" { $1 = ""; suites = $0 }
            END { if (!found) flush() }' "$f")"
        case "$uri" in */debian|*/debian/) echo "${uri%/}"; return 0 ;; esac
    done
    # One-line format: "deb [opts] URI suite components..."
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri="$(awk -v cn="$codename" '
            $1 == "deb" || $1 == "deb-src" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if (cn == "" || $(i+1) == cn) { print $i; exit } }' "$f")"
        case "$uri" in */debian|*/debian/) echo "${uri%/}"; return 0 ;; esac
    done
    return 1
}

# fetch_debian_source SUITE DESTDIR PKG...: `apt-get source PKG...` of SUITE into DESTDIR.
fetch_debian_source() {
    local suite="$1" dest="$2" mirror="${MIRROR:-}" tmp apt_opts=()
    shift 2
    if [ -z "$mirror" ]; then
        mirror="$(debian_mirror)" || die "could not find a Debian mirror (URIs ending in /debian) in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources"
    fi
    log "fetching source packages $* from '$suite' via this machine's mirror"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/dtls-lite-apt.XXXXXX")"
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$dest"
    echo "deb-src $mirror $suite main" > "$tmp/sources.list"
    apt_opts=(-q
        -o Dir::Etc::SourceList="$tmp/sources.list"
        -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State::Lists="$tmp/lists"
        -o Dir::Cache="$tmp/cache"
        -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)
    # As root apt drops privileges to _apt for downloads, which cannot write to our private dir.
    [ "$(id -u)" -eq 0 ] && apt_opts+=(-o APT::Sandbox::User=root)
    if ! apt-get "${apt_opts[@]}" update >"$tmp/update.log" 2>&1; then
        cat "$tmp/update.log" >&2; rm -rf "$tmp"
        die "apt-get update of the private $suite source list failed"
    fi
    if ! (cd "$dest" && apt-get "${apt_opts[@]}" source "$@") >"$tmp/source.log" 2>&1; then
        cat "$tmp/source.log" >&2; rm -rf "$tmp"
        die "apt-get source $* ($suite) failed"
    fi
    rm -rf "$tmp"
}
