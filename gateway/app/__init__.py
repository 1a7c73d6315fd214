"""Assembly: the command line, the application and its route table, building and running the services."""
