"""The compiled-versus-eager runner: timing core, engines, workloads, sweep and reports."""
