"""What turns a folder of runs into an answer: jobs, plans, statistics, the report's sections."""
