"""The people's face: the live console (/console), the API reference with a form per operation (/docs),
and the spec they are made from (/openapi.yaml, /openapi.json).  Pages and scripts are the project's
own files, served by the gateway: nothing is fetched from elsewhere."""
