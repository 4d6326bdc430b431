console.log("hi from ts", process.argv.slice(2));
