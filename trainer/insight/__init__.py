"""What a sweep tells a user: diagnose, --observed, doctor, the reports (report.md,
report.html, the schedules' figures), tune, export. Imports pipeline, backends
and spec."""
