"""Load testing with Locust: scenarios, shapes, tallies, reconciliation and the run itself."""
