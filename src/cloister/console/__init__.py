"""The web console: each party's approvals inbox, tasks and results in a browser.

It runs as its own process (``cloister up`` starts it; ``[console]`` settings) and is a client
of the frontend like any user: it holds no key or secret of the platform, only, for each signed-in
browser, that user's token, which the browser keeps in a cookie. Every page is rendered on the
server from the user's own calls, so the platform's access control decides what each user sees.
"""
