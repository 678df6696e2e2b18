//! Runs the `dfdx_mnist` example binary on a small budget, and its argument errors.

#[path = "common/example.rs"]
mod example;

#[test]
fn trains_explains_and_draws_on_a_small_budget() {
    example::trains_explains_and_draws_on_a_small_budget("dfdx_mnist");
}

#[test]
fn argument_errors_exit_with_code_2() {
    example::argument_errors_exit_with_code_2("dfdx_mnist");
}
