"""Training a model: trainer.Trainer (compile, fit, evaluate, predict, train_on_batch),
data_adapter (checks of x and y), epoch_iterator (batches to the backend),
callback_list (fit's callbacks as one)."""
