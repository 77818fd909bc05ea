#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for the results-store tests.
#
# Source it (from .ci/run):      . .ci/postgres.sh && trap electrode_qc_pg_stop EXIT
#   -> exports ELECTRODE_QC_TEST_PG=postgresql://postgres@127.0.0.1:PORT/postgres
#      (and ELECTRODE_QC_TEST_PG_DIR, the cluster's folder) and prints the URL line.
#      electrode_qc_pg_stop stops the server and removes its folder.
# Or run it:  eval "$(bash .ci/postgres.sh)"  ...  bash .ci/postgres.sh stop
#
# Installs Debian's postgresql with apt when no initdb/pg_ctl is found (root only; the
# package's default cluster is not created, so nothing else starts). The server runs as a
# non-root user (postgres, else nobody), listens on 127.0.0.1 only, trusts local connections
# and does not fsync: it is for tests only. When sourced, failures return 1 and never exit
# the calling shell.

_eqc_pg_bindir() {
    local initdb pg_ctl d
    initdb=$(command -v initdb 2>/dev/null) && pg_ctl=$(command -v pg_ctl 2>/dev/null) &&
        [ "$(dirname "$initdb")" = "$(dirname "$pg_ctl")" ] && { dirname "$initdb"; return 0; }
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5n | tail -n 1)
    [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
    return 1
}

_eqc_pg_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "postgres.sh: no PostgreSQL server binaries and not root: cannot install them" >&2
        return 1
    fi
    echo "postgres.sh: installing postgresql with apt" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || return 1
    apt-get install -y -qq postgresql-common >/dev/null || return 1
    # no default cluster (it would start on port 5432 and outlive the tests)
    mkdir -p /etc/postgresql-common
    if grep -q '^#\?\s*create_main_cluster' /etc/postgresql-common/createcluster.conf 2>/dev/null
    then
        sed -i 's/^#\?\s*create_main_cluster.*/create_main_cluster = false/' \
            /etc/postgresql-common/createcluster.conf
    else
        echo "create_main_cluster = false" >>/etc/postgresql-common/createcluster.conf
    fi
    apt-get install -y -qq postgresql >/dev/null || return 1
}

_eqc_pg_as() {  # run a command as the cluster's owner
    if [ "$(id -u)" -ne 0 ]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u "$_EQC_PG_USER" -- "$@"
    else
        su -s /bin/sh "$_EQC_PG_USER" -c "$(printf '%q ' "$@")"
    fi
}

_eqc_pg_port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

electrode_qc_pg_start() {
    local bindir dir port user
    bindir=$(_eqc_pg_bindir) || { _eqc_pg_install && bindir=$(_eqc_pg_bindir); } || {
        echo "postgres.sh: no PostgreSQL server binaries (initdb, pg_ctl)" >&2
        return 1
    }
    user=$(id -un)
    if [ "$(id -u)" -eq 0 ]; then
        user=nobody
        id -u postgres >/dev/null 2>&1 && user=postgres
    fi
    _EQC_PG_USER=$user
    port=54329
    while ! _eqc_pg_port_free "$port"; do
        port=$((port + 1))
        [ "$port" -gt 54429 ] && { echo "postgres.sh: no free port in 54329-54429" >&2; return 1; }
    done
    dir=$(mktemp -d /tmp/electrode-qc-pg.XXXXXX) || return 1
    [ "$(id -u)" -eq 0 ] && chown "$user" "$dir"
    (cd "$dir" && LC_ALL=C _eqc_pg_as "$bindir/initdb" -D "$dir/data" -U postgres -A trust \
        -E UTF8 --no-sync >"$dir/initdb.log" 2>&1) || {
        echo "postgres.sh: initdb failed:" >&2; cat "$dir/initdb.log" >&2; rm -rf "$dir"
        return 1
    }
    (cd "$dir" && LC_ALL=C _eqc_pg_as "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" \
        -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        -w -t 60 start >/dev/null) || {
        echo "postgres.sh: the server did not start:" >&2; cat "$dir/server.log" >&2
        rm -rf "$dir"
        return 1
    }
    export ELECTRODE_QC_TEST_PG="postgresql://postgres@127.0.0.1:$port/postgres"
    export ELECTRODE_QC_TEST_PG_DIR=$dir
    export ELECTRODE_QC_TEST_PG_BIN=$bindir
    export _EQC_PG_USER
    echo "ELECTRODE_QC_TEST_PG=$ELECTRODE_QC_TEST_PG"
}

electrode_qc_pg_stop() {
    local dir=${ELECTRODE_QC_TEST_PG_DIR:-} bindir=${ELECTRODE_QC_TEST_PG_BIN:-}
    [ -n "$dir" ] && [ -d "$dir/data" ] || return 0
    [ -n "$bindir" ] || bindir=$(_eqc_pg_bindir) || return 1
    if [ -z "${_EQC_PG_USER:-}" ]; then
        _EQC_PG_USER=$(stat -c %U "$dir/data")
    fi
    (cd "$dir" && _eqc_pg_as "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null)
    rm -rf "$dir"
    unset ELECTRODE_QC_TEST_PG ELECTRODE_QC_TEST_PG_DIR ELECTRODE_QC_TEST_PG_BIN
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then  # run, not sourced
    case "${1:-start}" in
        start)
            electrode_qc_pg_start >/dev/null || exit 1
            echo "export ELECTRODE_QC_TEST_PG=$ELECTRODE_QC_TEST_PG"
            echo "export ELECTRODE_QC_TEST_PG_DIR=$ELECTRODE_QC_TEST_PG_DIR"
            echo "export ELECTRODE_QC_TEST_PG_BIN=$ELECTRODE_QC_TEST_PG_BIN"
            echo "export _EQC_PG_USER=$_EQC_PG_USER"
            ;;
        stop) electrode_qc_pg_stop ;;
        *) echo "usage: postgres.sh [start|stop]" >&2; exit 2 ;;
    esac
else
    electrode_qc_pg_start
fi
