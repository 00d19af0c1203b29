/*
 * ssh_hostkey.h — host key verification for upgrun.ssh against an OpenSSH
 * known_hosts file: match / refuse a changed key (naming the file:line) /
 * refuse or pin (accept-new) an unknown key. No I/O on the SSH socket.
 */
#ifndef UPGRUN_SSH_HOSTKEY_H
#define UPGRUN_SSH_HOSTKEY_H

#include <libssh2.h>
#include <stdbool.h>
#include <stddef.h>

enum {
  SSHK_OK = 0,      /* known and matching, or newly pinned (accept-new) */
  SSHK_REFUSED = 1, /* changed or unknown key: error kind "hostkey" */
  SSHK_ERROR = 2,   /* could not read/append the file, no host key: "hostkey" */
};

/* Checks the session's host key for host:port against known_hosts. Fills
 * msg (a human message with the SHA256 fingerprint) when not SSHK_OK, and
 * fp with "SHA256:..." in every case (fp may be NULL). */
int sshk_check(LIBSSH2_SESSION *s, const char *host, int port,
               const char *known_hosts, bool accept_new, char *msg,
               size_t msglen, char *fp, size_t fplen);

/* Base64 (standard alphabet); pad=false omits '='. out must hold
 * 4*((n+2)/3)+1 bytes. Returns the length written. */
size_t sshk_base64(const unsigned char *in, size_t n, char *out, bool pad);

#endif
