"""The dashboard pages: views, who may see a site (``sharing``) and the named queries the
charts ask for (``queries``)."""
