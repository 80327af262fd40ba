//! Bad input to the frame reader (and, as they land, to the binaries that read frames): a
//! truncated FITS, a missing HDU, a wrong-shaped IVAR, NaN in FLUX. Each must be a one-line
//! error naming the file and the HDU, never a panic.
