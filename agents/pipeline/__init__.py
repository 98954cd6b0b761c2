"""The pipeline framework: DAG of steps (pure core in `dag`), step kinds (`registry`), errors."""
