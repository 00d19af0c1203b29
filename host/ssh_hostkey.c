/*
 * ssh_hostkey.c — known_hosts checking for upgrun.ssh (see ssh_hostkey.h).
 * libssh2's knownhost API does the matching (plain and hashed entries,
 * "[host]:port" for non-22 ports); this file adds what OpenSSH users expect
 * in the messages: the SHA256 fingerprint and the file:line of the entry
 * that no longer matches, and appends new keys for accept-new.
 */
#include "ssh_hostkey.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

size_t sshk_base64(const unsigned char *in, size_t n, char *out, bool pad) {
  static const char tab[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)in[i] << 16;
    if (i + 1 < n) v |= (unsigned)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    out[o++] = tab[(v >> 18) & 63];
    out[o++] = tab[(v >> 12) & 63];
    if (i + 1 < n)
      out[o++] = tab[(v >> 6) & 63];
    else if (pad)
      out[o++] = '=';
    if (i + 2 < n)
      out[o++] = tab[v & 63];
    else if (pad)
      out[o++] = '=';
  }
  out[o] = '\0';
  return o;
}

/* libssh2 host key type -> known_hosts key bits and OpenSSH name. */
static int key_bits(int type, const char **name) {
  switch (type) {
  case LIBSSH2_HOSTKEY_TYPE_RSA:
    *name = "ssh-rsa";
    return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
  case LIBSSH2_HOSTKEY_TYPE_DSS:
    *name = "ssh-dss";
    return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
#ifdef LIBSSH2_HOSTKEY_TYPE_ECDSA_256
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
    *name = "ecdsa-sha2-nistp256";
    return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
    *name = "ecdsa-sha2-nistp384";
    return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
    *name = "ecdsa-sha2-nistp521";
    return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
#endif
#ifdef LIBSSH2_HOSTKEY_TYPE_ED25519
  case LIBSSH2_HOSTKEY_TYPE_ED25519:
    *name = "ssh-ed25519";
    return LIBSSH2_KNOWNHOST_KEY_ED25519;
#endif
  default:
    *name = "unknown";
    return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
  }
}

/* The 1-based line of `path` holding an entry for host:port whose key differs,
 * or 0. Each line is checked on its own so the line number is exact. */
static int mismatch_line(LIBSSH2_SESSION *s, const char *path, const char *host,
                         int port, const char *key, size_t keylen, int mask) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[16384];
  int lineno = 0, found = 0;
  while (!found && fgets(line, sizeof line, f)) {
    lineno++;
    const char *p = line + strspn(line, " \t");
    if (*p == '#' || *p == '\n' || *p == '\0') continue;
    LIBSSH2_KNOWNHOSTS *one = libssh2_knownhost_init(s);
    if (!one) break;
    if (libssh2_knownhost_readline(one, line, strlen(line),
                                   LIBSSH2_KNOWNHOST_FILE_OPENSSH) == 0 &&
        libssh2_knownhost_checkp(one, host, port, key, keylen, mask, NULL) ==
            LIBSSH2_KNOWNHOST_CHECK_MISMATCH)
      found = lineno;
    libssh2_knownhost_free(one);
  }
  fclose(f);
  return found;
}

/* Appends "[host]:port type base64" (or "host type base64" on port 22). */
static int append_key(const char *path, const char *host, int port,
                      const char *tname, const char *key, size_t keylen,
                      char *msg, size_t msglen) {
  char *b64 = malloc(4 * ((keylen + 2) / 3) + 1);
  if (!b64) {
    snprintf(msg, msglen, "out of memory");
    return -1;
  }
  sshk_base64((const unsigned char *)key, keylen, b64, true);
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(msg, msglen, "cannot add the host key to %s: %s", path,
             strerror(errno));
    free(b64);
    return -1;
  }
  /* Start on a fresh line if the file does not end with one. */
  bool need_nl = false;
  struct stat st;
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    char last = '\n';
    if (pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n')
      need_nl = true;
  }
  char head[512];
  if (port == 22)
    snprintf(head, sizeof head, "%s%s %s ", need_nl ? "\n" : "", host, tname);
  else
    snprintf(head, sizeof head, "%s[%s]:%d %s ", need_nl ? "\n" : "", host,
             port, tname);
  size_t n = strlen(head) + strlen(b64) + 1;
  char *line = malloc(n + 1);
  int rc = -1;
  if (line) {
    snprintf(line, n + 1, "%s%s\n", head, b64);
    ssize_t w = write(fd, line, n);
    if (w == (ssize_t)n)
      rc = 0;
    else
      snprintf(msg, msglen, "cannot add the host key to %s: %s", path,
               w < 0 ? strerror(errno) : "short write");
    free(line);
  }
  close(fd);
  free(b64);
  return rc;
}

int sshk_check(LIBSSH2_SESSION *s, const char *host, int port,
               const char *known_hosts, bool accept_new, char *msg,
               size_t msglen, char *fp, size_t fplen) {
  char fpbuf[64] = "SHA256:?";
  const char *hash = libssh2_hostkey_hash(s, LIBSSH2_HOSTKEY_HASH_SHA256);
  if (hash) /* after the "SHA256:" already there */
    sshk_base64((const unsigned char *)hash, 32, fpbuf + 7, false);
  if (fp) snprintf(fp, fplen, "%s", fpbuf);

  size_t keylen = 0;
  int type = 0;
  const char *key = libssh2_session_hostkey(s, &keylen, &type);
  if (!key) {
    snprintf(msg, msglen, "%s:%d sent no host key", host, port);
    return SSHK_ERROR;
  }
  const char *tname;
  int mask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
             key_bits(type, &tname);

  LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(s);
  if (!kh) {
    snprintf(msg, msglen, "out of memory");
    return SSHK_ERROR;
  }
  bool exists = access(known_hosts, F_OK) == 0;
  if (exists && libssh2_knownhost_readfile(
                    kh, known_hosts, LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
    char *em = NULL;
    libssh2_session_last_error(s, &em, NULL, 0);
    snprintf(msg, msglen, "cannot read known_hosts %s: %s", known_hosts,
             em ? em : "?");
    libssh2_knownhost_free(kh);
    return SSHK_ERROR;
  }
  int r = libssh2_knownhost_checkp(kh, host, port, key, keylen, mask, NULL);
  libssh2_knownhost_free(kh);

  switch (r) {
  case LIBSSH2_KNOWNHOST_CHECK_MATCH:
    return SSHK_OK;
  case LIBSSH2_KNOWNHOST_CHECK_MISMATCH: {
    int line = mismatch_line(s, known_hosts, host, port, key, keylen, mask);
    snprintf(msg, msglen,
             "HOST KEY CHANGED for %s:%d: the server sent %s key %s, which "
             "differs from the key recorded in %s:%d; refusing to connect "
             "(remove that line if the change is expected)",
             host, port, tname, fpbuf, known_hosts, line);
    return SSHK_REFUSED;
  }
  case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
    if (!accept_new) {
      snprintf(msg, msglen,
               "unknown host key for %s:%d (%s %s) not in %s; refusing under "
               "host_key_policy=strict (add it, or use \"accept-new\")",
               host, port, tname, fpbuf, known_hosts);
      return SSHK_REFUSED;
    }
    if (append_key(known_hosts, host, port, tname, key, keylen, msg, msglen))
      return SSHK_ERROR;
    return SSHK_OK;
  default:
    snprintf(msg, msglen, "cannot check the host key of %s:%d against %s", host,
             port, known_hosts);
    return SSHK_ERROR;
  }
}
