from taskqueue.app import app


@app.task
def multiply(a, b):
    return a * b
