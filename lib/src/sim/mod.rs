//! The simulator: spectra through the instrument onto the CCD, then into a raw file.
//!
//! Photons per wavelength bin (reference/calibration.md §6.1, as specsim):
//! `N = f_λ · 1e-17 · A · t · Δλ · λ/(hc) · T_cam(λ) · T_fiber`, with f_λ in
//! 1e-17 erg/s/cm²/Å, A the effective area (cm²), t the exposure time (s), Δλ the bin width
//! (Å), hc = 1.98645e-8 erg·Å, T_cam the camera throughput and T_fiber the fiber's relative
//! throughput. Lamps are given directly in photons/s/Å at the fiber entrance. Each detected
//! photon is one electron (throughput includes the QE), so the extraction, which returns
//! electrons/Å, recovers N/Δλ convolved with the resolution.

pub mod cosmics;
pub mod exposure;
pub mod fibermap;
pub mod layout;
pub mod noise;
pub mod project;
pub mod psfmodel;
pub mod spectra;
