/* UTF-8: one code point at a time. */
#ifndef CORPUSLENS_BASE_UTF8_H
#define CORPUSLENS_BASE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Append the UTF-8 bytes of code point cp to buf (returns bytes written, 1-4). */
int cl_utf8_put(uint32_t cp, char *buf);
/* Decode one code point from s[0..len); returns bytes consumed or -1 if invalid. */
int cl_utf8_get(const unsigned char *s, size_t len, uint32_t *cp);

#endif
