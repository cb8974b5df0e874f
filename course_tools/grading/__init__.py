"""Grading student submissions (instructors only; ``./course.sh grade``, see ``grading/README.md``).

Trusted side (the grader's process and the one it forks per student):

============  ==================================================================
grader        the command: finds submissions, grades each student in a process of its
              own (regraded once if it dies), final reports, exit status
per_student   one student: scratch copy, exercises, execution, deliverables, samples
course        the course: notebooks, exercises, deliverables, hidden tests (loaded once)
hidden        the hidden-test format (``Exercise``, ``Case``, ``Build``, ``Generator``)
              and its loading: inputs encoded, answers computed before any student code
judge         runs the student side for a notebook's exercises, compares the answers
files         submissions in, deliverables out: never trusting a file of the student
sandbox       chooses and drives the sandbox (namespace, uid, bwrap or process mode)
report        one HTML page per student, ``grades.csv``
gradescope    the Gradescope autograder bundle and its ``run_autograder``
============  ==================================================================

Untrusted side (runs in the sandbox) and the boundary:

============  ==================================================================
launcher      the privileged start of a sandboxed command (namespaces, uid, limits)
student       defines a notebook's functions and calls them on the inputs it is sent
worker        ``execute`` a notebook with nbclient (sandbox); ``score_samples`` (grader)
wire          the only format across the boundary: JSON, tensors as raw bytes
probes        tiny models the hidden tests pass to exercises (built on both sides)
============  ==================================================================

Importing this package loads nothing: the execution worker and the launcher need no torch.
"""
