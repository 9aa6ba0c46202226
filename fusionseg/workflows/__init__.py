"""fusionseg.workflows: training, evaluation and prediction jobs composed from `fusionseg.engine`."""
