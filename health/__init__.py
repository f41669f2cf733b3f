"""The health endpoint for load balancers: the database, django-q2's broker and a recent worker."""
