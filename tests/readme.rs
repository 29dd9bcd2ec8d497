//! The README's two set-up commands are the ones CI runs: the test command is the last command of
//! `.ci/run`, and the main job names a runbook that exists.

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Commands of a shell text: lines that are neither blank nor comments.
fn commands(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
}

/// The commands of the first `sh` code block after the "## Set-up" heading.
fn setup_commands(readme: &str) -> Vec<String> {
    let section = &readme[readme.find("\n## Set-up").expect("README has a '## Set-up' section")..];
    let block = section.split("```sh\n").nth(1).expect("the set-up section has a sh code block");
    commands(block.split("```").next().unwrap())
}

#[test]
fn readme_setup_commands_are_the_ones_ci_runs() {
    let setup = setup_commands(&read("README.md"));
    assert_eq!(setup.len(), 2, "the set-up is two commands: {setup:?}");
    let (main_job, test_command) = (&setup[0], &setup[1]);

    let ci = commands(&read(".ci/run"));
    assert_eq!(ci.last(), Some(test_command), ".ci/run must end with the README's test command {test_command:?}");
    let script = test_command.split_whitespace().next().unwrap();
    if script.contains('/') {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert!(mode & 0o111 != 0, "{script} must be executable");
        assert!(commands(&read(script)).iter().any(|l| l.contains("cargo test")), "{script} runs cargo test");
    }

    let runbook = main_job.split_whitespace().find(|w| w.ends_with(".toml")).expect("the main job names a runbook");
    assert!(main_job.starts_with("cargo run --release"), "{main_job}");
    assert!(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(runbook).is_file(), "{runbook} exists");
}
