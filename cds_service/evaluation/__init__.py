"""Request context -> FHIR data -> assessment: what the hooks and the assessment view share
(state.py: AppState, HookCall, Service, Registry; pipeline.py: Evaluation, evaluate)."""
