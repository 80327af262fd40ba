//! Validation: each mistake gives one line naming it.

use spx_pipeline::{expand, ExpandOptions, PipelineSpec};

fn err(yaml: &str, vars: &[(&str, &str)]) -> String {
    let spec = match PipelineSpec::parse(yaml) {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    let opts = ExpandOptions {
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let e = expand(&spec, &opts)
        .expect_err("expected an error")
        .to_string();
    assert!(!e.contains('\n'), "not one line: {e}");
    e
}

const HEAD: &str = "variables: {outdir: /nonexistent-spx, night: 20201214}\nexposures:\n  list: [{night: 20201214, expid: 5, flavor: science}]\nstages:\n";

#[test]
fn unknown_stage_in_after() {
    let y = format!("{HEAD}  - {{name: a, command: x, after: [nope]}}\n");
    assert_eq!(err(&y, &[]), "stage a: after: unknown stage \"nope\"");
}

#[test]
fn cycle_through_files() {
    let y = format!(
        "{HEAD}  - {{name: a, command: x, inputs: {{i: /t/b}}, outputs: {{o: /t/a}}}}\n  - {{name: b, command: x, inputs: {{i: /t/a}}, outputs: {{o: /t/b}}}}\n"
    );
    let e = err(&y, &[]);
    assert!(
        e == "dependency cycle: a -> b -> a" || e == "dependency cycle: b -> a -> b",
        "{e}"
    );
}

#[test]
fn cycle_through_after() {
    let y = format!(
        "{HEAD}  - {{name: a, command: x, after: [b]}}\n  - {{name: b, command: x, after: [a]}}\n"
    );
    assert!(err(&y, &[]).starts_with("dependency cycle: "));
}

#[test]
fn missing_variable() {
    let y = format!(
        "{HEAD}  - {{name: a, command: x, outputs: {{o: \"{{outdir}}/{{tile}}.fits\"}}}}\n"
    );
    assert_eq!(
        err(&y, &[]),
        "stage a: task a: output o: missing variable {tile}"
    );
    // A variable that needs a task's variables is inlined where it is used; one that needs
    // an undefined name fails where it is used.
    let y = "variables: {logs: \"{where}/logs\"}\nlogdir: \"{logs}\"\nstages: []\n";
    assert_eq!(err(y, &[]), "logdir: missing variable {where}");
    // --var supplies it.
    let spec = PipelineSpec::parse(y).unwrap();
    let opts = ExpandOptions {
        vars: vec![("where".into(), "/w".into())],
        ..Default::default()
    };
    assert!(expand(&spec, &opts).is_ok());
}

#[test]
fn output_written_by_two_tasks() {
    let y = format!(
        "{HEAD}  - {{name: a, command: x, foreach: {{camera: [b0, r0]}}, outputs: {{o: \"{{outdir}}/{{night}}.fits\"}}}}\n"
    );
    assert_eq!(
        err(&y, &[]),
        "output /nonexistent-spx/20201214.fits is written by two tasks: a-b0 and a-r0"
    );
}

#[test]
fn input_nobody_produces() {
    let y = format!(
        "{HEAD}  - {{name: a, command: x, foreach: {{exposure: all, camera: [b0]}}, inputs: {{i: \"{{outdir}}/{{file:preproc}}\"}}}}\n"
    );
    assert_eq!(
        err(&y, &[]),
        "task a-5-b0: input /nonexistent-spx/preproc/20201214/00000005/preproc-b0-00000005.fits does not exist and no task produces it"
    );
    // Optional inputs are dropped instead, and so are the options that name them.
    let y = format!(
        "{HEAD}  - {{name: a, command: x, foreach: {{camera: [b0]}}, inputs: {{\"bias?\": /nope.fits}}, options: {{bias: \"{{inputs.bias}}\", fast: true, slow: false}}}}\n"
    );
    let plan = expand(&PipelineSpec::parse(&y).unwrap(), &ExpandOptions::default()).unwrap();
    assert_eq!(plan.tasks[0].argv, vec!["x", "--fast"]);
}

#[test]
fn schema_typos_and_bad_templates() {
    let y = format!("{HEAD}  - {{name: a, comand: x}}\n");
    assert!(
        err(&y, &[]).contains("unknown field `comand`"),
        "{}",
        err(&y, &[])
    );
    let y = format!("{HEAD}  - {{name: a, command: \"{{oops\"}}\n");
    assert!(
        err(&y, &[]).starts_with("stage a: template \"{oops\": unclosed"),
        "{}",
        err(&y, &[])
    );
    let y = format!("{HEAD}  - {{name: a, command: x, group_by: [camera]}}\n");
    assert_eq!(
        err(&y, &[]),
        "stage a: group_by camera: not a foreach variable of this stage"
    );
    let y = format!("{HEAD}  - {{name: a b, command: x}}\n");
    assert!(err(&y, &[]).contains("a stage name may only have"));
}

#[test]
fn after_matches_shared_variables() {
    let y = format!(
        "{HEAD}  - {{name: a, command: x, foreach: {{camera: [b0, r0]}}}}\n  - {{name: b, command: y, foreach: {{exposure: all, camera: [b0, r0]}}, after: [a]}}\n"
    );
    let plan = expand(&PipelineSpec::parse(&y).unwrap(), &ExpandOptions::default()).unwrap();
    let names = |id: usize| -> Vec<&str> {
        plan.tasks[id]
            .deps
            .iter()
            .map(|&d| plan.tasks[d].name.as_str())
            .collect()
    };
    assert_eq!(plan.tasks[2].name, "b-5-b0");
    assert_eq!(names(2), vec!["a-b0"]);
    assert_eq!(names(3), vec!["a-r0"]);
}
