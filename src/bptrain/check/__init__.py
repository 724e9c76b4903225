"""`bptrain check`: a learner's own layers, written the book's way, held against bptrain's.

`cases` makes seeded inputs and the reference's answers, `subject` calls the user's class,
`checks` and `checks_kinds` hold one kind of mistake each, `runner` runs them all and
`scorecard` words the result for a person.
"""
