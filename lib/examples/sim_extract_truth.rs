//! Full-size extraction-against-truth check (scripts/bench-extract): simulates a `desi`
//! science exposure of one camera (all fibers unless NSPEC is given), extracts it with the
//! true PSF over the whole grid and prints the pull statistics of (flux − R·truth)·√ivar.
//!
//! Usage: sim_extract_truth [CAMERA [NSPEC [SEED]]]   (defaults: r0 500 1)

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let camera = args.get(1).map_or("r0", String::as_str);
    let inst = spx::instrument::Instrument::preset("desi")?;
    let nspec = match args.get(2) {
        Some(s) => s.parse()?,
        None => inst.nspec,
    };
    let seed = match args.get(3) {
        Some(s) => s.parse()?,
        None => 1,
    };
    let (cam, _) = inst.camera(camera)?;
    let nwave = cam.wave_grid().len();
    let t0 = std::time::Instant::now();
    let s = spx::extract::simcheck::sim_extract_pulls(&inst, camera, nspec, 0..nwave, seed)?;
    println!(
        "desi {camera} {nspec} fibers x {nwave} wavelengths, seed {seed}: pulls n {} mean {:.4} sigma {:.4} chi2/dof {:.4} ({:.1} s)",
        s.n,
        s.mean,
        s.sigma,
        s.chi2,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
