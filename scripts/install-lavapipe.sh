#!/usr/bin/env bash
# Installs Mesa's lavapipe (software Vulkan) when no Vulkan driver is present or the
# installed Mesa is older than 24 (bookworm's 22.3 makes every storage-buffer load ~7x slower).
# Safe to run again: it does nothing when a recent enough driver is already installed.
set -euo pipefail

mesa_major() {
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^[0-9]+://; s/\..*//'
}

have_icd() {
  compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null || compgen -G "/etc/vulkan/icd.d/*.json" >/dev/null
}

major=$(mesa_major || true)
if have_icd && [ -n "$major" ] && [ "$major" -ge 24 ]; then
  echo "lavapipe: Mesa $major already installed"
  exit 0
fi
if have_icd && [ -z "$major" ]; then
  echo "lavapipe: a non-Mesa Vulkan driver is installed; leaving it as it is"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "lavapipe: no apt-get here; install a Vulkan driver (Mesa >= 24 lavapipe, or your GPU's) by hand" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
if [ "$codename" = "bookworm" ]; then
  # bookworm's own Mesa is 22.3: take 25.x from bookworm-backports.
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" |
      $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
else
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
echo "lavapipe: installed mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
