"""After training: load a trained model from what the user names, evaluate it with the paper's
test protocols, export it, and predict labels of image files."""
