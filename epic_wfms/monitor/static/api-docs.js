// Starts Swagger UI on /api/v1/docs (a script file: the Content-Security-Policy forbids
// inline scripts). Swagger UI itself comes from the installed fastapi-offline package.
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapi,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,          // no call to an outside validator service
    persistAuthorization: false  // a pasted token is not kept in the browser's storage
  });
});
