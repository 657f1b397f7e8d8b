#!/usr/bin/env bash
# Install what zkit's real-ZooKeeper tests need, on Debian/Ubuntu:
#   required: Java and Apache ZooKeeper 3.8 (Debian package `zookeeper` -> libzookeeper-java:
#             /usr/share/java/zookeeper.jar, plus the slf4j-log4j12 and log4j 1.2 jars the
#             zkit-testcontainers fixture puts on the classpath for logging)
#   optional: python3-kazoo and python3-pure-sasl (reference client, also over SASL),
#             libzookeeper-mt-dev (C client), an MIT Kerberos KDC (krb5-kdc, krb5-admin-server,
#             krb5-user) plus libkrb5-dev and libclang-dev to build zkit's `gssapi` feature, Apache
#             Curator 5.4 (libcurator-*-java) and a JDK's javac for the recipes' interop tests;
#             failures to install these are only warnings. ZKIT_INSTALL_OPTIONAL=0 skips them.
#
# Idempotent: when everything is present it does nothing. Runs apt-get as root, or through
# sudo when not root. Installs with --no-install-recommends so no ZooKeeper service
# (zookeeperd) is started. Skips the Debian check when ZKIT_ZOOKEEPER_CLASSPATH or
# ZOOKEEPER_HOME points at another installation.
set -euo pipefail

log() { echo "install-zookeeper: $*" >&2; }

DEBIAN_JARS=(/usr/share/java/zookeeper.jar /usr/share/java/slf4j-log4j12.jar /usr/share/java/log4j-1.2.jar)
OPTIONAL_PKGS=(python3-kazoo python3-pure-sasl libzookeeper-mt-dev krb5-kdc krb5-admin-server krb5-user libkrb5-dev libclang-dev libcurator-recipes-java libcurator-framework-java
  libcurator-client-java libcurator-discovery-java libslf4j-java)

have_java() {
  if [[ -n ${JAVA_HOME:-} ]]; then
    [[ -x $JAVA_HOME/bin/java ]]
  else
    command -v java >/dev/null 2>&1
  fi
}

have_zookeeper() {
  if [[ -n ${ZKIT_ZOOKEEPER_CLASSPATH:-} ]]; then
    return 0
  fi
  if [[ -n ${ZOOKEEPER_HOME:-} ]]; then
    compgen -G "$ZOOKEEPER_HOME/lib/zookeeper-*.jar" >/dev/null || compgen -G "$ZOOKEEPER_HOME/zookeeper-*.jar" >/dev/null
    return
  fi
  local jar
  for jar in "${DEBIAN_JARS[@]}"; do
    [[ -f $jar ]] || return 1
  done
}

pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing_optional() {
  [[ ${ZKIT_INSTALL_OPTIONAL:-1} == 0 ]] && return 0
  command -v dpkg-query >/dev/null 2>&1 || return 0
  local pkg
  for pkg in "${OPTIONAL_PKGS[@]}"; do
    pkg_installed "$pkg" || echo "$pkg"
  done
  command -v javac >/dev/null 2>&1 || echo default-jdk-headless
}

# Prefix for privileged commands; fails when neither root nor sudo is available.
as_root() {
  if [[ $(id -u) == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    if [[ -t 0 ]]; then sudo "$@"; else sudo -n "$@"; fi
  else
    log "need root (or sudo) to run: $*"
    return 1
  fi
}

apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

required=()
have_java || required+=(default-jre-headless)
have_zookeeper || required+=(zookeeper)
mapfile -t optional < <(missing_optional)

if [[ ${#required[@]} -eq 0 && ${#optional[@]} -eq 0 ]]; then
  log "Java (${JAVA_HOME:+$JAVA_HOME/bin/}java) and ZooKeeper jars present; nothing to do"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  if [[ ${#required[@]} -gt 0 ]]; then
    log "missing: ${required[*]}; no apt-get here. Install Java and ZooKeeper 3.8 yourself and set"
    log "JAVA_HOME and ZOOKEEPER_HOME (or ZKIT_ZOOKEEPER_CLASSPATH)"
    exit 1
  fi
  log "optional packages missing (${optional[*]}) and no apt-get; skipping them"
  exit 0
fi

log "+ apt-get update"
if ! as_root apt-get update -q; then
  [[ ${#required[@]} -gt 0 ]] && { log "apt-get update failed"; exit 1; }
  log "apt-get update failed; skipping optional packages (${optional[*]})"
  exit 0
fi

if [[ ${#required[@]} -gt 0 ]]; then
  log "+ apt-get install ${required[*]}"
  apt_install "${required[@]}"
fi

for pkg in "${optional[@]}"; do
  log "+ apt-get install $pkg (optional)"
  apt_install "$pkg" || log "warning: could not install optional package $pkg; continuing"
done

if ! have_java; then
  log "Java still missing after installation"
  exit 1
fi
if ! have_zookeeper; then
  log "ZooKeeper jars still missing after installation (expected ${DEBIAN_JARS[*]})"
  exit 1
fi
log "ready: $("${JAVA_HOME:+$JAVA_HOME/bin/}java" -version 2>&1 | head -1); ZooKeeper $(dpkg-query -W -f='${Version}' zookeeper 2>/dev/null || echo "(from ZOOKEEPER_HOME/ZKIT_ZOOKEEPER_CLASSPATH)")"
