"""Load testing with Locust: scenarios, shapes, counter_sets, reconciliation and the run itself."""
