"""Where events go: dataset files and HTTP targets."""
