//! The `ringcorn` command: the built-in apps behind the Gunicorn-style command line.

fn main() {
    ringcorn::run_apps(ringcorn::apps::builtin())
}
