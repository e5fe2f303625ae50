"""(in progress)"""


def add_routes(app):
    pass
