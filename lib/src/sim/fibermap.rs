//! FIBERMAP and TRUTH tables of a simulated exposure (reference/calibration.md §5.5): one row
//! per fiber of the simulated spectrographs, DESI column names and types, photometry in
//! nanomaggies (FLUX_* and FIBERFLUX_* are both the synthetic photometry of the spectrum
//! entering the fiber: the fiber-acceptance loss is folded into the spectrum), EBV = 0
//! (no Galactic extinction is simulated), PHOTSYS "S".

use crate::io::fibermap::Fibermap;
use crate::io::fits::{Column, ColumnData};
use crate::io::table::Table;
use crate::maskbits::fibermask;
use crate::speclib::targets::{Kind, Target};

/// One simulated spectrograph's targets.
pub struct PetalTargets<'a> {
    /// Spectrograph (petal) index.
    pub sp: usize,
    /// Fibers per spectrograph.
    pub nspec: usize,
    pub targets: &'a [Target],
}

fn subtype(k: Kind) -> &'static str {
    match k {
        Kind::Elg => "ELG",
        Kind::Lrg => "LRG",
        Kind::Std => "F",
        _ => "",
    }
}

/// The FIBERMAP of `petals`, rows ordered by FIBER.
pub fn fibermap(petals: &[PetalTargets], tileid: i64) -> Fibermap {
    let rows: Vec<(usize, usize, &Target)> = petals
        .iter()
        .flat_map(|p| {
            p.targets
                .iter()
                .enumerate()
                .map(move |(i, t)| (p.sp, p.nspec * p.sp + i, t))
        })
        .collect();
    let n = rows.len();
    let f32s =
        |f: &dyn Fn(&Target) -> f64| ColumnData::F32(rows.iter().map(|r| f(r.2) as f32).collect());
    let i64s = |f: &dyn Fn(&Target) -> i64| ColumnData::I64(rows.iter().map(|r| f(r.2)).collect());
    let bits = |t: &Target| t.truth.kind.target_bits();
    let status = |t: &Target| {
        if t.truth.kind == Kind::Dead {
            fibermask::BROKENFIBER
        } else {
            0
        }
    };
    let cols = vec![
        Column::new("TARGETID", i64s(&|t| t.truth.targetid)),
        Column::new(
            "PETAL_LOC",
            ColumnData::I16(rows.iter().map(|r| r.0 as i16).collect()),
        ),
        Column::new(
            "DEVICE_LOC",
            ColumnData::I32(rows.iter().map(|r| (r.1 % 1000) as i32).collect()),
        ),
        Column::new(
            "LOCATION",
            ColumnData::I64(
                rows.iter()
                    .map(|r| (1000 * r.0 + r.1 % 1000) as i64)
                    .collect(),
            ),
        ),
        Column::new(
            "FIBER",
            ColumnData::I32(rows.iter().map(|r| r.1 as i32).collect()),
        ),
        Column::new(
            "FIBERSTATUS",
            ColumnData::I32(rows.iter().map(|r| status(r.2)).collect()),
        ),
        Column::new(
            "OBJTYPE",
            ColumnData::Str(
                rows.iter()
                    .map(|r| r.2.truth.kind.objtype().to_string())
                    .collect(),
            ),
        ),
        Column::new("TILEID", ColumnData::I32(vec![tileid as i32; n])),
        Column::new(
            "TARGET_RA",
            ColumnData::F64(rows.iter().map(|r| r.2.truth.ra).collect()),
        )
        .with_unit("deg"),
        Column::new(
            "TARGET_DEC",
            ColumnData::F64(rows.iter().map(|r| r.2.truth.dec).collect()),
        )
        .with_unit("deg"),
        Column::new("DESI_TARGET", i64s(&|t| bits(t).0)),
        Column::new("BGS_TARGET", ColumnData::I64(vec![0; n])),
        Column::new("MWS_TARGET", i64s(&|t| bits(t).1)),
        Column::new("SCND_TARGET", ColumnData::I64(vec![0; n])),
        Column::new("FLUX_G", f32s(&|t| t.truth.flux_g)).with_unit("nanomaggy"),
        Column::new("FLUX_R", f32s(&|t| t.truth.flux_r)).with_unit("nanomaggy"),
        Column::new("FLUX_Z", f32s(&|t| t.truth.flux_z)).with_unit("nanomaggy"),
        Column::new("FLUX_IVAR_G", f32s(&|t| ivar(t.truth.flux_g))).with_unit("nanomaggy^-2"),
        Column::new("FLUX_IVAR_R", f32s(&|t| ivar(t.truth.flux_r))).with_unit("nanomaggy^-2"),
        Column::new("FLUX_IVAR_Z", f32s(&|t| ivar(t.truth.flux_z))).with_unit("nanomaggy^-2"),
        Column::new("FIBERFLUX_G", f32s(&|t| t.truth.flux_g)).with_unit("nanomaggy"),
        Column::new("FIBERFLUX_R", f32s(&|t| t.truth.flux_r)).with_unit("nanomaggy"),
        Column::new("FIBERFLUX_Z", f32s(&|t| t.truth.flux_z)).with_unit("nanomaggy"),
        Column::new("EBV", ColumnData::F32(vec![0.0; n])),
        Column::new("PHOTSYS", ColumnData::Str(vec!["S".into(); n])),
        Column::new(
            "MORPHTYPE",
            ColumnData::Str(
                rows.iter()
                    .map(|r| {
                        match r.2.truth.kind {
                            Kind::Elg => "EXP",
                            Kind::Lrg => "DEV",
                            Kind::Sky | Kind::Dead => "",
                            _ => "PSF",
                        }
                        .to_string()
                    })
                    .collect(),
            ),
        ),
    ];
    let table = Table::new(cols).unwrap_or_default();
    Fibermap::from_table(table).unwrap_or_else(|_| Fibermap::minimal(&[]))
}

/// Photometric inverse variance: 2% + 0.01 nanomaggy errors (deep imaging).
fn ivar(f: f64) -> f64 {
    let s = 0.02 * f.abs() + 0.01;
    1.0 / (s * s)
}

/// The TRUTH table (module doc of [`crate::io::simtruth`]).
pub fn truth_table(petals: &[PetalTargets]) -> Table {
    let rows: Vec<(usize, &Target)> = petals
        .iter()
        .flat_map(|p| {
            p.targets
                .iter()
                .enumerate()
                .map(move |(i, t)| (p.nspec * p.sp + i, t))
        })
        .collect();
    let f64s = |f: &dyn Fn(&Target) -> f64| ColumnData::F64(rows.iter().map(|r| f(r.1)).collect());
    let f32s =
        |f: &dyn Fn(&Target) -> f64| ColumnData::F32(rows.iter().map(|r| f(r.1) as f32).collect());
    let strs =
        |f: &dyn Fn(&Target) -> String| ColumnData::Str(rows.iter().map(|r| f(r.1)).collect());
    Table::new(vec![
        Column::new(
            "TARGETID",
            ColumnData::I64(rows.iter().map(|r| r.1.truth.targetid).collect()),
        ),
        Column::new(
            "FIBER",
            ColumnData::I32(rows.iter().map(|r| r.0 as i32).collect()),
        ),
        Column::new("OBJTYPE", strs(&|t| t.truth.kind.objtype().into())),
        Column::new("SPECTYPE", strs(&|t| t.truth.kind.spectype().into())),
        Column::new("SUBTYPE", strs(&|t| subtype(t.truth.kind).into())),
        Column::new("Z", f64s(&|t| t.truth.z)),
        Column::new("TEFF", f32s(&|t| t.truth.teff)).with_unit("K"),
        Column::new("LOGG", f32s(&|t| t.truth.logg)),
        Column::new("FEH", f32s(&|t| t.truth.feh)),
        Column::new("OIIFLUX", f32s(&|t| t.truth.oii_flux)).with_unit("10**-17 erg/(s cm2)"),
        Column::new("FLUX_G", f32s(&|t| t.truth.flux_g)).with_unit("nanomaggy"),
        Column::new("FLUX_R", f32s(&|t| t.truth.flux_r)).with_unit("nanomaggy"),
        Column::new("FLUX_Z", f32s(&|t| t.truth.flux_z)).with_unit("nanomaggy"),
        Column::new("FIBERTHRU", f32s(&|t| t.truth.fiber_throughput)),
    ])
    .unwrap_or_default()
}
