-- Where a model version was exported to MLflow (run id, registered model
-- version), when MLFLOW_TRACKING_URI is set.
ALTER TABLE models ADD COLUMN mlflow JSONB;
