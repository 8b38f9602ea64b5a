"""What is learned and how: encodings, fields, models, the trainer and the command-line tools."""
