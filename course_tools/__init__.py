"""course_tools: the instructor's command line for *Diffusion, from scratch* (not taught in a notebook).

``python -m course_tools COMMAND`` (or ``./course.sh COMMAND``):

=================  ==========================================================
run                execute every notebook in order, report wall times
generate           sample digits from the trained models into an .npz file
release            write the student notebooks (solutions replaced by stubs)
grading            grade student submissions: the grader, its workers, the report
=================  ==========================================================

The course's concepts live in ``course_utils``; this package only imports it. Importing
``course_tools`` itself loads nothing heavy, so ``release`` runs without torch.
"""
