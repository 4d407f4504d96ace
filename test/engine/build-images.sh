#!/usr/bin/env bash
# Builds the offline test images (no registry needed) unless the engine already has them.
#   p2prc-test/busybox      from Debian's busybox-static (instant)
#   p2prc-test/debian-sshd  from debootstrap --variant=minbase + openssh-server (~40 s; rootfs cached)
# Usage: build-images.sh [busybox] [sshd]   (default: both)
set -euo pipefail
log() { echo "images: $*" >&2; }
cache="${P2PRC_TEST_CACHE:-/var/cache/p2prc-test}"
want=("$@"); [ ${#want[@]} -eq 0 ] && want=(busybox sshd)
have() { docker image inspect "$1" >/dev/null 2>&1; }
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  dpkg -s "$@" >/dev/null 2>&1 || { apt-get update -qq >&2; apt-get install -y -qq "$@" >&2; }
}
for w in "${want[@]}"; do
  case "$w" in
    busybox)
      have p2prc-test/busybox && continue
      apt_install busybox-static
      root=$(mktemp -d); mkdir -p "$root/bin" "$root/tmp" "$root/root" "$root/etc" "$root/var/www"
      cp /bin/busybox "$root/bin/busybox"
      for app in $("$root/bin/busybox" --list); do [ "$app" = busybox ] || ln -sf busybox "$root/bin/$app"; done
      echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"; echo 'root:x:0:' > "$root/etc/group"
      tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' - p2prc-test/busybox >/dev/null
      rm -rf "$root"; log "built p2prc-test/busybox" ;;
    sshd)
      have p2prc-test/debian-sshd && continue
      mkdir -p "$cache"
      if [ ! -f "$cache/debian-sshd.tar" ]; then
        apt_install debootstrap
        root=$(mktemp -d)
        log "debootstrap bookworm with openssh-server (about a minute) ..."
        debootstrap --variant=minbase --include=openssh-server bookworm "$root" http://deb.debian.org/debian >&2
        mkdir -p "$root/run/sshd" "$root/root/.ssh"; chmod 700 "$root/root/.ssh"
        chroot "$root" ssh-keygen -A >&2
        rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
        tar -C "$root" -cf "$cache/debian-sshd.tar.tmp" . && mv "$cache/debian-sshd.tar.tmp" "$cache/debian-sshd.tar"
        rm -rf "$root"
      fi
      docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$cache/debian-sshd.tar" p2prc-test/debian-sshd >/dev/null
      log "built p2prc-test/debian-sshd" ;;
    *) log "unknown image $w"; exit 2 ;;
  esac
done
