from tfenv.model.problems import Problem, SpecError, format_problems


def test_same_problem_on_many_hosts_is_one_line() -> None:
    problems = [Problem(f"h{i}", "gpu_count", "a number", "'x'") for i in range(8)]
    problems.append(Problem("h0", "containers.a.image", "a tag"))
    text = format_problems(problems)
    assert text.splitlines() == [
        "h0, h1, h2, h3, h4 (+3 more): gpu_count: expected a number, got 'x'",
        "h0: containers.a.image: expected a tag",
    ]


def test_spec_error_message_lists_every_problem() -> None:
    error = SpecError([Problem("a", "f", "x"), Problem("b", "g", "y")])
    assert str(error) == "a: f: expected x\nb: g: expected y"
    assert len(error.problems) == 2
