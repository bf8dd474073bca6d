#!/usr/bin/env bash
# Builds the Kiln images (serving kiln:cpu, training kiln-train:cpu) where no public registry
# can be reached (CI), and lints their Dockerfiles.
#
# Users build with `make containerize` and `make containerize-train` on the public base
# images. CI cannot pull them, so this script, the one place for that detour:
#   1. uses the container engine DOCKER_HOST names, or the default one, and otherwise starts
#      its own Docker daemon (Debian's docker.io) on unix:///run/kiln-docker.sock, with its
#      data under /var/lib/kiln-docker and no host network changes (no bridge, no iptables:
#      builds and containers use the host network);
#   2. builds the base image kiln-ci-base:bookworm from a Debian rootfs (debootstrap
#      --variant=minbase with python3, python3-venv, tini, ca-certificates): once, skipped
#      while the engine has the image; both images build on it;
#   3. downloads the wheels of requirements-serve.lock on this host (Python 3.11 on x86_64,
#      as bookworm's python3) into build/wheels, so that pip in the build needs no index;
#   4. `make containerize BASE_IMAGE=kiln-ci-base:bookworm WHEELS=build/wheels` (the Bento
#      from $BENTOML_HOME, as `make build` makes it);
#   5. the same for the training image: the wheels of requirements-train.lock into
#      build/wheels-train, then `make containerize-train BASE_IMAGE=kiln-ci-base:bookworm
#      WHEELS=build/wheels-train` (deploy/docker/Dockerfile.train, context the repository);
#   6. lints deploy/docker/Dockerfile and Dockerfile.train with hadolint and renders the GPU
#      build (`make -n containerize-gpu`), which CI does not run: no GPU, no CUDA base image.
# It installs nothing: .ci/run installs docker.io and debootstrap.
#
#   deploy/ci-image.sh [all]     every step; a second run reuses the base image and wheels
#   deploy/ci-image.sh engine    step 1 only; prints DOCKER_HOST= (empty: the default engine)
#                                and STARTED=1 when it started the daemon
#   deploy/ci-image.sh stop-engine   stops the daemon this script started (its pidfile)
#   deploy/ci-image.sh base      steps 1-2          deploy/ci-image.sh image  steps 1-4
#   deploy/ci-image.sh train-image   steps 1, 2 and 5
#   deploy/ci-image.sh lint      step 6
# Environment: IMAGE (kiln; the training image is $IMAGE-train), CONTEXT (build/container),
# BENTOML_HOME, KILN_SERVE_MODELS, DEBIAN_MIRROR, WHEELS_DIR, TRAIN_WHEELS_DIR,
# KILN_DOCKERD_ARGS (extra dockerd flags, e.g. --storage-driver vfs).
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-docker}
SOCKET=/run/kiln-docker.sock
DATA_ROOT=/var/lib/kiln-docker
EXEC_ROOT=/run/kiln-docker
PIDFILE=/run/kiln-docker.pid
DAEMON_LOG=/var/log/kiln-docker.log
CI_BASE_IMAGE=${CI_BASE_IMAGE:-kiln-ci-base:bookworm}
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WHEELS_DIR=${WHEELS_DIR:-build/wheels}
TRAIN_WHEELS_DIR=${TRAIN_WHEELS_DIR:-build/wheels-train}
PYTHON=${PYTHON:-.venv/bin/python}
STARTED=0

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ci-image: %s\n' "$*" >&2; exit 1; }

engine_answers() { timeout 20 "$DOCKER" info >/dev/null 2>&1; }

start_daemon() {  # extra dockerd flags in "$@"; 0 once it answers
  mkdir -p "$DATA_ROOT" "$EXEC_ROOT" "$(dirname "$DAEMON_LOG")"
  # shellcheck disable=SC2086  # KILN_DOCKERD_ARGS is a list of flags
  setsid dockerd --host "unix://$SOCKET" --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" \
    --pidfile "$PIDFILE" --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    "$@" ${KILN_DOCKERD_ARGS:-} </dev/null >>"$DAEMON_LOG" 2>&1 &
  local pid=$! _
  for _ in $(seq 120); do
    engine_answers && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  return 1
}

ensure_engine() {
  if engine_answers; then
    return
  fi
  if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != "unix://$SOCKET" ]; then
    die "DOCKER_HOST=$DOCKER_HOST does not answer"
  fi
  export DOCKER_HOST="unix://$SOCKET"
  engine_answers && return
  command -v dockerd >/dev/null || die "no container engine answers and dockerd is missing (apt-get install docker.io)"
  [ "$(id -u)" = 0 ] || die "starting dockerd needs root"
  say "starting dockerd on $DOCKER_HOST (log: $DAEMON_LOG)"
  if ! start_daemon; then
    say "dockerd did not start with its default storage driver; trying vfs"
    start_daemon --storage-driver vfs || die "dockerd did not start: see $DAEMON_LOG"
  fi
  STARTED=1
  say "dockerd ready: storage driver $("$DOCKER" info --format '{{.Driver}}')"
}

stop_engine() {
  [ -s "$PIDFILE" ] || { say "no daemon of this script runs"; return 0; }
  local pid
  pid=$(cat "$PIDFILE")
  kill -0 "$pid" 2>/dev/null || { say "no daemon of this script runs"; return 0; }
  say "stopping dockerd $pid"
  kill -TERM "$pid"
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  die "dockerd $pid did not stop in 30 s"
}

unmount_under() {  # every mount below directory $1, deepest first
  local root mounts
  root=$(realpath -m "$1")
  mounts=$(findmnt --list --noheadings --output TARGET | grep -F "$root/" | sort -r) || return 0
  while read -r mount; do
    # debootstrap mounts /proc in the target and, inside a container, cannot always
    # unmount it again ("target is busy"): a lazy unmount detaches it all the same.
    umount "$mount" 2>/dev/null || umount --lazy "$mount"
  done <<<"$mounts"
}

ensure_base() {
  if "$DOCKER" image inspect "$CI_BASE_IMAGE" >/dev/null 2>&1; then
    say "$CI_BASE_IMAGE present"
    return
  fi
  command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
  local rootfs=build/rootfs start=$SECONDS
  mkdir -p build
  unmount_under "$rootfs"
  rm -rf "$rootfs"
  say "debootstrap $DEBIAN_SUITE (minbase) into $rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,tini,ca-certificates \
    "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" >build/debootstrap.log 2>&1 \
    || { unmount_under "$rootfs"; tail -20 build/debootstrap.log >&2; die "debootstrap failed: build/debootstrap.log"; }
  unmount_under "$rootfs"  # else tar would pack the host's /proc into the image
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
  tar --numeric-owner -C "$rootfs" -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase $DEBIAN_SUITE" - "$CI_BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  say "$CI_BASE_IMAGE imported in $((SECONDS - start)) s"
}

ensure_wheels() {  # $1: a lock file, $2: the directory for its wheels
  local lock=$1 dir=$2
  "$PYTHON" -c 'import platform, sys; sys.exit(sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64")' \
    || die "the wheels are downloaded for the base image's Python 3.11 on x86_64: $PYTHON is not"
  local stamp="$dir/.$lock"
  if [ -f "$stamp" ] && cmp -s "$lock" "$stamp"; then
    say "wheels in $dir are current"
    return
  fi
  say "downloading the wheels of $lock into $dir"
  rm -rf "$dir"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --python-version 3.11 -r "$lock" -d "$dir"
  cp "$lock" "$stamp"
}

build_image() {
  local start=$SECONDS
  make --no-print-directory containerize BASE_IMAGE="$CI_BASE_IMAGE" WHEELS="$WHEELS_DIR" \
    DOCKER="$DOCKER" DOCKER_BUILD_ARGS="--network host"
  say "image ${IMAGE:-kiln}:cpu built in $((SECONDS - start)) s"
}

build_train_image() {
  local start=$SECONDS image=${IMAGE:-kiln}-train:cpu
  make --no-print-directory containerize-train BASE_IMAGE="$CI_BASE_IMAGE" WHEELS="$TRAIN_WHEELS_DIR" \
    DOCKER="$DOCKER" DOCKER_BUILD_ARGS="--network host"
  say "image $image built in $((SECONDS - start)) s, $(( $("$DOCKER" image inspect --format '{{.Size}}' "$image") / 1000000 )) MB"
}

lint() {
  local hadolint=${HADOLINT:-}
  if [ -z "$hadolint" ]; then
    for candidate in .venv-tools/bin/hadolint .venv/bin/hadolint "$(command -v hadolint || true)"; do
      [ -n "$candidate" ] && [ -x "$candidate" ] && { hadolint=$candidate; break; }
    done
  fi
  [ -n "$hadolint" ] || die "hadolint is missing (make install puts it in .venv-tools)"
  "$hadolint" deploy/docker/Dockerfile deploy/docker/Dockerfile.train
  say "hadolint: deploy/docker/Dockerfile and Dockerfile.train pass"
  say "the GPU image, rendered (CI has no GPU and cannot pull the CUDA base):"
  make --no-print-directory -n containerize-gpu
}

case "${1:-all}" in
  engine) ensure_engine; printf 'DOCKER_HOST=%s\nSTARTED=%s\n' "${DOCKER_HOST:-}" "$STARTED" ;;
  stop-engine) stop_engine ;;
  base) ensure_engine; ensure_base ;;
  image) ensure_engine; ensure_base; ensure_wheels requirements-serve.lock "$WHEELS_DIR"; build_image ;;
  train-image)
    ensure_engine; ensure_base; ensure_wheels requirements-train.lock "$TRAIN_WHEELS_DIR"
    build_train_image ;;
  lint) lint ;;
  all)
    ensure_engine; ensure_base
    ensure_wheels requirements-serve.lock "$WHEELS_DIR"; build_image
    ensure_wheels requirements-train.lock "$TRAIN_WHEELS_DIR"; build_train_image
    lint ;;
  *) die "usage: $0 [all|engine|stop-engine|base|image|train-image|lint]" ;;
esac
