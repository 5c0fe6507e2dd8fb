"""The web UI at ``/ui/``: server-rendered pages over the service and metadata layers, in the API's route table.

    render.py    Jinja2 (autoescape everywhere), the pages' security headers, redirects and cookies
    sessions.py  logins to the UI: a session row per login, its cookie and its CSRF token
    viewer.py    who is looking, and what they may read and delete
    pages.py     the routes: login, repositories, tags, a manifest, deletes behind a confirmation
    admin_accounts.py  administration: users, organizations and teams, robots, grants, visibility, the audit log
    admin_ops.py the operations' administration pages: webhooks, GC, quotas, rules, mirrors and proxies

Templates and static files (one CSS file, one small script that only adds copy buttons) are package data.
"""
