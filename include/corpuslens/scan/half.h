/* IEEE binary16 (float16) values as the index stores them: conversions and
 * the HDF5 file type. Shared by the index (index.h) and its pruning sketch
 * (sketch.h); depends on neither. */
#ifndef CORPUSLENS_SCAN_HALF_H
#define CORPUSLENS_SCAN_HALF_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* float16 <-> float32, round to nearest even (exact inverse on halves). */
uint16_t cl_f32_to_f16(float f);
float cl_f16_to_f32(uint16_t h);
/* n halves to floats (F16C where the CPU has it; the same values). */
void cl_f16_to_f32_n(const uint16_t *in, float *out, size_t n);
/* The HDF5 file type of float16 values: IEEE binary16, little-endian (the
 * caller closes it); H5I_INVALID_HID on failure. */
hid_t cl_index_f16_type(void);

#endif
