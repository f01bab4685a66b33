/* Reading whole files. */
#ifndef CORPUSLENS_FILEIO_H
#define CORPUSLENS_FILEIO_H

#include <stddef.h>

/* Read the whole file into a malloc'ed buffer (NUL-terminated, the NUL not
 * counted in *len); path "-" reads standard input to its end. At most max_bytes (0 = no limit). NULL with cl_error
 * ("cannot open PATH: reason", "cannot read PATH: reason", out of memory,
 * "PATH is larger than N bytes") on failure. */
char *cl_read_file(const char *path, size_t max_bytes, size_t *len);

/* Read exactly n bytes at offset off of fd (pread, retried on EINTR and short
 * reads). 0, or -1 with errno set (0 when the file ended first); the caller
 * writes the message (cl_pread_reason gives its reason text). */
int cl_pread_exact(int fd, void *buf, size_t n, unsigned long long off);
const char *cl_pread_reason(void);

/* Durability (every writer's last step). cl_fsync_path: fsync the file PATH
 * (data and size on disk). cl_fsync_dir_of: fsync the directory that holds
 * PATH, so that a rename or remove in it is on disk (a file system that
 * cannot fsync a directory, EINVAL, counts as done). 0, or -1 with cl_error
 * ("cannot write PATH: reason"). */
int cl_fsync_path(const char *path);
int cl_fsync_dir_of(const char *path);
/* Put a finished TMP in place as PATH: fsync TMP, rename it to PATH, fsync
 * the directory. On failure TMP is removed (PATH is untouched) and the
 * message names the cause. 0 or -1. */
int cl_commit_file(const char *tmp, const char *path);
/* Remove the files of folder DIR whose names start with PREFIX (a resume
 * state's per-rank files); a folder that cannot be read is left alone. */
void cl_remove_prefixed(const char *dir, const char *prefix);

#endif
