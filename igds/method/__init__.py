"""The IGDS method's stages as functions of built objects: extraction, recall, interventions,
resonance, selection and the baselines."""
