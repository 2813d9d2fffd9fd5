"""The support-triage example's metric (README "Your own task"): a score in [0, 1], and what was wrong, which the
optimizer reads with `direction: feedback`."""


def score(example, reply):  # example: the row's columns, plus id, input, answer, answers
    said = reply.strip().strip(".").lower()
    team = example["team"]
    if said == team:
        return 1.0
    if team in said:
        return 0.5, f"names {team} but says more than the team's name"
    return 0.0, f"the ticket is for {team}, the reply says {said[:40]!r}"
